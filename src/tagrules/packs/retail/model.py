"""The customer snapshot of the retail pack."""

from __future__ import annotations

import datetime
import enum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CityTier", "Customer", "Gender", "Occupation"]


class Gender(str, enum.Enum):
    """Gender as the customer gave it."""

    MALE = "male"
    FEMALE = "female"


class CityTier(str, enum.Enum):
    """The tier of the city the customer lives in."""

    TIER1 = "tier1"
    TIER2 = "tier2"
    TIER3 = "tier3"
    RURAL = "rural"


class Occupation(str, enum.Enum):
    """The customer's occupation."""

    EMPLOYEE = "employee"
    CIVIL_SERVANT = "civil_servant"
    TEACHER = "teacher"
    STUDENT = "student"
    FREELANCER = "freelancer"
    OTHER = "other"


class Customer(BaseModel):
    """One customer's profile, merged from orders, browsing, service and complaint records.

    Counts and amounts are over the window their name gives (``_30d``: the last 30 days before the
    snapshot); amounts are in CNY.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    age: int | None = None
    gender: Gender | None = None
    city_tier: CityTier | None = None
    occupation: Occupation | None = None
    registered_at: datetime.datetime
    first_order_at: datetime.datetime | None = None
    last_order_at: datetime.datetime | None = None
    orders_30d: int = 0
    orders_90d: int = 0
    orders_365d: int = 0
    orders_total: int = 0
    spend_365d: float = 0.0
    spend_total: float = 0.0
    category_spend_365d: dict[str, float] = Field(default_factory=dict)
    views_hot_30d: int = 0
    views_new_30d: int = 0
    category_views_30d: dict[str, int] = Field(default_factory=dict)
    intent_signals_30d: int = 0
    inquiries_90d: int = 0
    complaints_90d: int = 0
    service_contacts_90d: int = 0
    online_service_share: float | None = None
    personalised_requests_90d: int = 0
    strategic_partner: bool = False
