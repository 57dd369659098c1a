"""Request bodies and shared parameter types of the REST API (pydantic, strict about unknown fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from creditgate.text import ID_PATTERN, TEXT_PATTERN

OrgId = Annotated[str, Path(pattern=ID_PATTERN, description="An organization id")]
ResourceId = Annotated[str, Path(pattern=ID_PATTERN)]
Amount = Annotated[str, Field(max_length=40, pattern=r"^\s*[+-]?\d+(\.\d+)?\s*$",
                              description='A decimal string such as "12.5"')]
Timestamp = Annotated[str, Field(max_length=64, pattern=TEXT_PATTERN,
                                 description="ISO 8601 with a timezone")]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse what the JSON parser accepts but orjson cannot write back (integers beyond 64 bits,
    nesting past its recursion limit): the idempotency fingerprint and the ledger both serialize
    it, and the fingerprint runs before the ledger's own check."""
    try:
        orjson.dumps(value)
    except TypeError as error:
        raise PydanticCustomError("json_unstorable", "must be JSON the server can store: {reason}",
                                  {"reason": str(error)}) from None
    return value


Metadata = Annotated[dict[str, Any], Field(max_length=64), AfterValidator(_storable_json)]
CursorQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")]


# Integer fields also set strict=True: lax mode would read "10", 10.0 and true as 10, so a
# client's type mistake would be written instead of refused.
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrgCreate(Strict):
    name: Name
    overdraft_limit: Amount | None = None


class OrgUpdate(Strict):
    name: Name | None = None
    overdraft_limit: Amount | None = None


class ProjectCreate(Strict):
    name: Name


class KeyCreate(Strict):
    name: Name
    scopes: Annotated[list[Literal["inference", "read", "manage"]], Field(min_length=1, max_length=3)]
    project_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    expires_at: Timestamp | None = None


class GrantCreate(Strict):
    credits: Amount
    kind: Literal["purchase", "trial", "promotional", "rollover", "adjustment", "recurring"] = "purchase"
    scope: Literal["inference", "training", "any"] = "any"
    priority: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 100
    effective_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    cost_basis: Amount | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    allow: Annotated[list[Name], Field(min_length=1, max_length=100)] | None = None
    metadata: Metadata | None = None


class HoldCreate(Strict):
    credits: Amount
    scope: Literal["inference", "training"] = "inference"
    ttl_s: Annotated[int, Field(ge=1, le=7 * 86_400, strict=True)] = 300
    model: Name | None = None
    metadata: Metadata | None = None


class HoldPost(Strict):
    credits: Amount


class BundleBody(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:@/+-]*$")]
    price: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    credits: Amount
    bonus_credits: Amount = "0"
    validity_days: Annotated[int, Field(ge=1, le=3_650, strict=True)] | None = None
    rollover: Annotated[str, Field(max_length=40, pattern=TEXT_PATTERN)] | dict[str, Any] | None = None
    scope: Literal["inference", "training"] = "inference"
    priority: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 100
    description: Annotated[str, Field(max_length=500, pattern=TEXT_PATTERN)] = ""


class PurchaseCreate(Strict):
    bundle_id: Annotated[str, Field(pattern=ID_PATTERN)]
    payment_reference: Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[\x21-\x7e]+$")]
    quantity: Annotated[int, Field(ge=1, le=1_000, strict=True)] = 1


class QuoteRequest(Strict):
    model: Name
    usage: Annotated[dict[str, Annotated[int, Field(ge=0, le=10**15, strict=True)]], Field(max_length=32)]
    at: Timestamp | None = None
    org_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
