"""Logs as JSON lines, one object a line, with the request they belong to.

Every request gets an id: the ``X-Request-ID`` the proxy sent (nginx passes ``$request_id``), when it
is a short plain token, else a new one; the answer echoes it in ``X-Request-ID``. After each
request one line goes to the ``moralbank.request`` logger::

    {"time": "2026-12-01T00:05:00.123Z", "level": "INFO", "logger": "moralbank.request",
     "request_id": "4f1c…", "method": "POST", "route": "/login", "endpoint": "web.login",
     "status": 302, "duration_ms": 41.2, "user_id": 7, "remote_addr": "10.0.0.5"}

``route`` is the URL rule (``/me/pay/status/<code>``), never the path as sent, and no query string
and no body is logged, so a token, password or PIN in a URL or form never reaches the log. Every
other record (warnings, errors with their traceback) is a JSON line too, with the request id when it
happened in a request; its text goes through :func:`mask_secrets` (URL tokens, ``password=…``/
``pin=…`` pairs, and phone numbers, kept as ``138****0001``).

``LOG_FORMAT=json`` (the default in production) installs the formatter on the root logger's handler;
``text`` leaves Python's logging as it is (development).
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from flask import g, has_request_context, request

from .edge import mask_tokens

REQUEST_LOGGER = logging.getLogger("moralbank.request")

#: an incoming X-Request-ID is kept only when it looks like an id (no spaces, quotes or newlines)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: mainland mobile numbers (11 digits from 1[3-9]) not inside a longer number
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
#: secret=value pairs in text (form bodies, query strings, repr of dicts)
_SECRET_PAIR = re.compile(r"""(["']?(?:password|new_password|current_password|pin|token|secret|authorization)["']?"""
                          r"""\s*[=:]\s*["']?)(?:Bearer\s+)?[^\s&,"'}]+""", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with URL tokens, secret pairs and the middle of phone numbers replaced."""
    text = mask_tokens(text)
    text = _SECRET_PAIR.sub(r"\1***", text)
    return _PHONE.sub(r"\1****\3", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the request's id when there is one; secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        else:
            line["message"] = mask_secrets(record.getMessage())
            if has_request_context() and "request_id" in g:
                line["request_id"] = g.request_id
        if record.exc_info:
            line["error"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def _begin() -> None:
    g.request_started = time.perf_counter()
    sent = request.headers.get("X-Request-ID", "")
    g.request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex


def _user_id():
    # Only a user already loaded for this request (the API's token user, Flask-Login's): no query of its own.
    user = g.get("api_user") or g.get("_login_user")
    return getattr(user, "id", None)


def _finish(response):
    request_id = g.get("request_id")
    if request_id is None:
        return response
    response.headers["X-Request-ID"] = request_id
    if REQUEST_LOGGER.isEnabledFor(logging.INFO):
        started = g.get("request_started")
        rule = request.url_rule
        fields = {"request_id": request_id, "method": request.method,
                  "route": rule.rule if rule is not None else None, "endpoint": request.endpoint,
                  "status": response.status_code,
                  "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
                  "user_id": _user_id(), "remote_addr": request.remote_addr}
        # JSON: the fields; text (development): the same in one readable line
        REQUEST_LOGGER.info("%s %s %s %sms user=%s id=%s", fields["method"], fields["route"], fields["status"],
                            fields["duration_ms"], fields["user_id"], request_id, extra={"fields": fields})
    return response


def _install_json_logging() -> None:
    """One handler on the root logger writing JSON lines to standard error (gunicorn's workers leave
    the root logger alone; systemd's journal or the log shipper takes standard error)."""
    root = logging.getLogger()
    if not any(getattr(handler, "_moralbank_json", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._moralbank_json = True
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def init_app(app) -> None:
    if app.config.get("LOG_FORMAT") == "json":
        _install_json_logging()
        app.logger.handlers.clear()  # Flask's default handler would write the same record as text
        app.logger.propagate = True
    REQUEST_LOGGER.setLevel(logging.INFO)
    REQUEST_LOGGER.disabled = False  # Alembic's logging.fileConfig (a migration in this process) turns it off
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_finish)
