"""Rules compiled to SQL: the compiler (:mod:`tagrules.sql.compiler`, syntax tree -> SQLAlchemy Core)
and the dialect tables that extend it (:mod:`tagrules.sql.dialects`); JSON and regex translations in
private modules beside them. Where the rows come from is :mod:`tagrules.sources`."""
