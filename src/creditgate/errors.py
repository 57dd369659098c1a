"""The one tree of operating errors.

Every failure a user can cause (bad input, unknown ids, insufficient credits, conflicts) is a
subclass of :class:`CreditgateError`. Entrypoints map them to HTTP answers or CLI exits using the
``status`` and ``code`` class attributes; nothing below the entrypoints knows about HTTP.
Programmer errors are assertions and are never caught here.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CreditgateError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"
    error_type: ClassVar[str] = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.error_type,
            "message": self.message,
            "param": self.param,
            "code": self.code,
        }
        body.update(self.details)
        return {"error": body}


class InvalidInput(CreditgateError):
    status = 422
    code = "invalid_input"


class NotFound(CreditgateError):
    status = 404
    code = "not_found"
    error_type = "not_found_error"


class Conflict(CreditgateError):
    status = 409
    code = "conflict"
    error_type = "conflict_error"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InsufficientCredits(CreditgateError):
    status = 402
    code = "insufficient_credits"
    error_type = "insufficient_credits"

    def __init__(self, message: str, *, available: str, required: str,
                 limit_source: str = "credits", **details: Any) -> None:
        super().__init__(message, available=available, required=required,
                         limit_source=limit_source, **details)


class HoldNotPending(Conflict):
    """A hold that was already posted, voided or expired."""

    code = "hold_not_pending"


class Unauthorized(CreditgateError):
    status = 401
    code = "invalid_api_key"
    error_type = "authentication_error"


class Forbidden(CreditgateError):
    status = 403
    code = "forbidden"
    error_type = "permission_error"


class RateLimited(CreditgateError):
    status = 429
    code = "rate_limit_exceeded"
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class UpstreamError(CreditgateError):
    status = 502
    code = "upstream_error"
    error_type = "upstream_error"


class PayloadTooLarge(CreditgateError):
    status = 413
    code = "payload_too_large"


class DamagedRow(CreditgateError):
    """A stored row whose JSON column does not parse: only an edit made outside creditgate (or a
    bug) can write one. It names the row, so that an operator can find it; ``creditgate verify``
    reports every such row."""

    status = 500
    code = "damaged_row"
    error_type = "api_error"
