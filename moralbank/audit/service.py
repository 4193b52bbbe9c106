"""Recording staff actions."""
from __future__ import annotations

from flask import has_request_context, request

from ..extensions import db
from .models import AuditEntry


def record(action: str, *, actor=None, village_id=None, target=None, detail=None) -> AuditEntry:
    """Append an audit entry to the current transaction.

    ``target`` is a model instance (its class name and id are kept). The entry
    commits or rolls back with the action it describes.
    """
    source = request.remote_addr if has_request_context() else "cli"
    entry = AuditEntry(
        action=action,
        actor_id=getattr(actor, "id", None),
        village_id=village_id,
        target_type=type(target).__name__.lower() if target is not None else None,
        target_id=getattr(target, "id", None),
        detail=detail,
        source=source,
    )
    db.session.add(entry)
    return entry
