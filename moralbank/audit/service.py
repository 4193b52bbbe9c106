"""Recording staff actions."""
from __future__ import annotations

from flask import has_request_context, request

from ..extensions import db
from .models import AuditEntry


def record(action: str, *, actor=None, village_id=None, target=None, detail=None,
           target_type: str | None = None, target_id: int | None = None) -> AuditEntry:
    """Append an audit entry to the current transaction.

    ``target`` is a model instance (its class name and id are kept), or give ``target_type`` and
    ``target_id`` when only the id is at hand. The entry commits or rolls back with the action it
    describes.
    """
    source = request.remote_addr if has_request_context() else "cli"
    entry = AuditEntry(
        action=action,
        actor_id=getattr(actor, "id", None),
        village_id=village_id,
        target_type=type(target).__name__.lower() if target is not None else target_type,
        target_id=getattr(target, "id", None) if target is not None else target_id,
        detail=detail,
        source=source,
    )
    db.session.add(entry)
    return entry


def record_denial(reason: str) -> None:
    """Log an authorisation refusal (a 403) in a transaction of its own, after rolling back
    whatever the refused request had started (it changes nothing).

    The route's pattern and its numeric arguments are kept, not the raw path, so a one-time token
    in a URL (a payment code link) never reaches the log."""
    from flask import current_app

    from ..database import write_transaction
    from ..people import access
    from ..people.auth import request_user

    try:
        db.session.rollback()
        user = request_user()
        rule = request.url_rule.rule if request.url_rule is not None else None
        arguments = {key: value for key, value in (request.view_args or {}).items() if isinstance(value, int)}
        village_id = access.home_village_id(user)
        with write_transaction():
            record("auth.denied", actor=user, village_id=village_id,
                   detail={"method": request.method, "route": rule, "args": arguments, "reason": reason})
    except Exception:  # the refusal itself must still reach the user
        db.session.rollback()
        current_app.logger.exception("could not record an authorisation denial")
