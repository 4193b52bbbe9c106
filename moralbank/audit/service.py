"""Recording staff actions.

The audit log is written by every domain and imports none: the caller names the actor (an
authorisation refusal is recorded by ``people.auth.record_denial``, which knows the request's user).
"""
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

