"""The snapshot of a loyalty-programme member."""

from __future__ import annotations

import datetime

from pydantic import BaseModel

__all__ = ["Member", "Order"]


class Order(BaseModel):
    """One order of a member."""

    at: datetime.datetime
    amount: float


class Member(BaseModel):
    """A member of the loyalty programme, as the loyalty pack's rules see them."""

    id: str
    joined_at: datetime.datetime
    last_order_at: datetime.datetime | None = None
    orders: list[Order] = []
    points: int = 0
