"""The customer ids every store can hold: the same limits for SQLite, PostgreSQL, MariaDB and memory."""

from __future__ import annotations

__all__ = ["MAX_CONSUMER_LENGTH", "MAX_ID_LENGTH", "customer_id_problem"]

#: The longest customer id a store holds, in characters (the width of the id columns, which
#: ``_tables.ID_LENGTH`` takes from here: 191 keeps a utf8mb4 key within MySQL's oldest index limits).
MAX_ID_LENGTH = 191
#: The longest name of a change feed consumer, in characters.
MAX_CONSUMER_LENGTH = 64


def customer_id_problem(customer_id: str) -> str | None:
    """What keeps a store from holding ``customer_id``, or ``None`` when every store can hold it.

    An id is at least one and at most ``MAX_ID_LENGTH`` characters of valid Unicode without NUL
    (PostgreSQL's text cannot hold NUL; no driver can encode a lone surrogate).
    """
    if not customer_id:
        return "the id is empty"
    if len(customer_id) > MAX_ID_LENGTH:
        return f"the id is {len(customer_id):,} characters long; stores hold ids of up to {MAX_ID_LENGTH}"
    if "\x00" in customer_id:
        return "the id holds a NUL character, which PostgreSQL cannot store"
    try:
        customer_id.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"the id holds a lone surrogate ({customer_id[error.start]!r}), which is not valid Unicode"
    return None
