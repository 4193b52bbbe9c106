"""Domain errors. Each carries a machine code and an HTTP status; the API turns
them into the JSON error envelope and the web pages into a readable message."""
from __future__ import annotations


class DomainError(Exception):
    """A refusal the user should see. Nothing was changed."""

    code = "bad_request"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 fields: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.fields = fields or {}


class NotFound(DomainError):
    code, status = "not_found", 404


class Forbidden(DomainError):
    code, status = "forbidden", 403


class Conflict(DomainError):
    code, status = "conflict", 409


class Invalid(DomainError):
    code, status = "invalid", 422


def range_words(low: int | None = None, high: int | None = None) -> str:
    """What a number field accepts, in the words every error message uses ("要填 1 到 50 的整数"),
    so the pages and the API say a range the same way."""
    from flask_babel import gettext as _

    if low is not None and high is not None:
        return _("要填 %(low)s 到 %(high)s 的整数", low=low, high=high)
    if low is not None:
        return _("要填不小于 %(low)s 的整数", low=low)
    return _("要填整数")
