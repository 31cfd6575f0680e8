"""The test databases themselves: every server the tests need answers, and scratch databases are real."""

from __future__ import annotations

import sqlalchemy
from sqlalchemy.engine import URL


class TestDatabases:
    def test_each_database_round_trips_a_row(self, database_url: URL) -> None:
        """A table created in the scratch database keeps what is written to it."""
        engine = sqlalchemy.create_engine(database_url)
        metadata = sqlalchemy.MetaData()
        table = sqlalchemy.Table(
            "probe", metadata, sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True)
        )
        try:
            metadata.create_all(engine)
            with engine.begin() as connection:
                connection.execute(table.insert(), [{"id": 1}, {"id": 2}])
            with engine.connect() as connection:
                assert (
                    connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar()
                    == 2
                )
        finally:
            metadata.drop_all(engine)
            engine.dispose()

    def test_scratch_databases_are_not_the_default_one(self, database_url: URL) -> None:
        """Tests never write into the server's shared database."""
        if database_url.get_backend_name() == "sqlite":
            assert database_url.database is not None
            assert database_url.database.endswith("tagrules.db")
        else:
            assert database_url.database is not None
            assert database_url.database.startswith("tagrules_test_")
