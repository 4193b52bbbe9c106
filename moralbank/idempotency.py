"""Idempotency of ledger-changing requests: a retried request moves no points twice.

The client sends a key (``Idempotency-Key`` header in the API, a hidden
``idempotency_key`` field in forms). The first request with a key claims it by
inserting a record in the same transaction as its effects, and stores its
answer there; a repeat with the same request replays that answer and writes
nothing; the same key with a different request is refused with 409. A request
that fails leaves no record (its transaction rolls back), so it can be retried.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import wraps
from typing import Optional

from flask import Response, request
from flask_babel import gettext as _
from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, utcnow, write_transaction
from .errors import Conflict, Invalid
from .extensions import db

MAX_KEY_LENGTH = 128


class IdempotencyRecord(db.Model):
    """A claimed idempotency key and the answer it produced."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_records_user_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: whose key (keys are per user); 0 is never a user, so NULL is not needed
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    #: SHA-256 of method, path and body
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[Optional[int]] = mapped_column()
    response_body: Mapped[Optional[dict]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


def request_fingerprint(body: object) -> str:
    """A stable hash of the request: method, path and canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def check_encodable(body: object) -> None:
    """Refuse JSON that cannot be stored as UTF-8 (lone surrogates such as "\\udcff")."""
    try:
        json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        from .errors import DomainError
        raise DomainError(_("提交的文字里有无法识别的字符"), code="invalid_json", status=400)


def request_body() -> object:
    """What identifies the request's content: its JSON, or its form fields and uploaded files' hashes."""
    if request.is_json:
        body = request.get_json(silent=True)
        check_encodable(body)
        return body
    body: dict = {key: request.form.getlist(key) for key in sorted(request.form) if key != "csrf_token"}
    for key in sorted(request.files):
        body["file:" + key] = [hashlib.sha256(f.read()).hexdigest() for f in request.files.getlist(key)]
        for f in request.files.getlist(key):
            f.stream.seek(0)
    return body


def _claim(user_id: int, key: str, fingerprint: str) -> Optional[int]:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = IdempotencyRecord.__table__
    stmt = (insert(table).values(user_id=user_id, key=key, request_hash=fingerprint, created_at=utcnow())
            .on_conflict_do_nothing().returning(table.c.id))
    return db.session.execute(stmt).scalar_one_or_none()


def run_once(user, key: str | None, body: object, action, *, required: bool = True):
    """Run ``action()`` (which returns ``(json_body, status)``) at most once for ``key``.

    Returns ``(json_body, status, replayed)``. Everything ``action`` writes and
    the record of its answer commit together.
    """
    if not key:
        if required:
            raise Invalid(_("缺少 Idempotency-Key"), code="idempotency_key_required",
                          fields={"Idempotency-Key": [_("每个改变积分的请求都要带一个唯一的键")]})
        with write_transaction():
            payload, status = action()
        return payload, status, False
    if len(key) > MAX_KEY_LENGTH:
        raise Invalid(_("Idempotency-Key 太长"), fields={"Idempotency-Key": [f"<= {MAX_KEY_LENGTH}"]})
    fingerprint = request_fingerprint(body)
    with write_transaction():
        claimed = _claim(user.id, key, fingerprint)
        if claimed is None:
            existing = db.session.scalar(select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user.id, IdempotencyRecord.key == key))
            if existing.request_hash != fingerprint:
                raise IdempotencyConflict(_("这个 Idempotency-Key 已用于另一个不同的请求"))
            return existing.response_body, existing.status_code, True
        payload, status = action()
        db.session.execute(update(IdempotencyRecord.__table__)
                           .where(IdempotencyRecord.__table__.c.id == claimed)
                           .values(status_code=status, response_body=payload))
    return payload, status, False


def idempotent_api(required: bool = True, prepare=None):
    """Decorator for API views that change points: the view returns ``(dict, status)``.

    ``prepare(*args, **kwargs)``, if given, runs before the write transaction (on SQLite, before
    the write lock) and its result reaches the view as ``prepared=``: the reads that find what the
    view acts on. It must not refuse what a replay would answer (the view checks, inside)."""
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            from .people.auth import request_user

            body = request_body()
            if prepare is not None:
                kwargs = dict(kwargs, prepared=prepare(*args, **kwargs))
            payload, status, replayed = run_once(
                request_user(), request.headers.get("Idempotency-Key"), body,
                lambda: view(*args, **kwargs), required=required)
            response: Response = Response(json.dumps(payload, ensure_ascii=False), status=status,
                                          mimetype="application/json")
            if replayed:
                response.headers["Idempotent-Replayed"] = "true"
            return response
        wrapper._idempotent = True
        return wrapper
    return decorator
