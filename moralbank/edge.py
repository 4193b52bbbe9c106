"""The edge of the app: what every request passes before a view sees it, and what every answer
carries on its way out.

- :func:`refuse_unsafe_input`: one guard for all input. A NUL character (PostgreSQL's text
  cannot hold one: psycopg raises ``DataError``) or a lone surrogate (not UTF-8, so neither
  engine can store it) in the path, the query string, a form field, an uploaded file's name, a
  header or a JSON string is a 400 before any view, limiter key or database sees it; so is JSON
  nested deeper than :data:`MAX_JSON_DEPTH`.
- :class:`GuardedJSONProvider`: Python's JSON parser recurses, so 50,000 ``[`` are a
  ``RecursionError`` (not the ``ValueError`` Flask turns into a 400): here they are a
  ``ValueError`` like any other malformed body.
- :func:`secure_headers`: HSTS over HTTPS, and no full Referer from a page whose URL carries a
  payment or card token.
- :func:`public_url`: the absolute URL put in a QR code, from ``PUBLIC_BASE_URL`` when set rather
  than from the request's Host header.
- :func:`mask_tokens`: the token-bearing parts of a URL replaced by ``***``, for the access log.
"""
from __future__ import annotations

import re

from flask import current_app, request, url_for
from flask.json.provider import DefaultJSONProvider
from flask_babel import gettext as _

from .errors import DomainError

#: deeper JSON is refused; the API's bodies are three levels deep at most.
MAX_JSON_DEPTH = 32

#: text no column of either engine stores faithfully: NUL and lone UTF-16 surrogates.
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


class UnsafeInput(DomainError):
    code, status = "invalid_characters", 400


class TooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH` (or than Python's recursion limit)."""


def _json_depth_exceeds(value, limit: int) -> bool:
    """Whether ``value`` nests lists/objects deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in items if isinstance(child, (dict, list)))
    return False


def _json_unsafe_character(value) -> str | None:
    """The first NUL or lone surrogate in any string (key or value) of ``value``, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            match = _UNSAFE_TEXT.search(item)
            if match:
                return match.group()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


class GuardedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with absurd nesting a ``ValueError`` (so a 400), never a ``RecursionError``."""

    def loads(self, s, **kwargs):
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise TooDeep("JSON nested too deeply") from None
        if _json_depth_exceeds(value, MAX_JSON_DEPTH):
            raise TooDeep("JSON nested too deeply")
        return value


def _refuse_characters():
    raise UnsafeInput(_("提交的内容里有不允许的字符（如空字符）"))


def refuse_unsafe_input() -> None:
    """``before_request``, first of all: refuse NUL/surrogates anywhere and over-nested JSON."""
    if _UNSAFE_TEXT.search(request.path):
        _refuse_characters()
    for key, value in request.args.items(multi=True):
        if _UNSAFE_TEXT.search(key) or _UNSAFE_TEXT.search(value):
            _refuse_characters()
    for key, value in request.headers.items():
        if "\x00" in key or "\x00" in value:
            _refuse_characters()
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for key, value in request.form.items(multi=True):
            if _UNSAFE_TEXT.search(key) or _UNSAFE_TEXT.search(value):
                _refuse_characters()
        for key, upload in request.files.items(multi=True):
            if _UNSAFE_TEXT.search(key) or _UNSAFE_TEXT.search(upload.filename or ""):
                _refuse_characters()
    if request.is_json and request.content_length != 0:
        body = request.get_json(silent=True)
        if body is None:
            # Malformed JSON is the view's to refuse (each says how); only the nesting is refused here.
            try:
                current_app.json.loads(request.get_data(cache=True))
            except TooDeep:
                raise UnsafeInput(_("提交的 JSON 嵌套太深"), code="too_deep") from None
            except ValueError:
                return
        else:
            character = _json_unsafe_character(body)
            if character == "\x00":
                _refuse_characters()
            elif character:
                # a lone surrogate: JSON that is not UTF-8, as the API has always called it
                raise UnsafeInput(_("提交的文字里有无法识别的字符"), code="invalid_json")


# --- URLs that carry a payment code, a code's token or a card's token ----------------------------

#: query parameters whose value is a token, a payment code or a PIN (``/shop/redeem?t=``,
#: ``/shop/redeem?code=``, ``/shop/card?t=``)
TOKEN_QUERY_PARAMETERS = ("t", "code", "token", "pin")
#: paths with a payment code in a segment (``/me/pay/qr/<code>.png``, ``/me/pay/status/<code>``,
#: ``/api/v1/redemption-codes/<code>/qr.png``)
_TOKEN_PATH = re.compile(r"(/me/pay/(?:qr|status)/|/redemption-codes/)([^/?#\s\".]+)")
#: ``?t=``, ``&code=``, and the same URL-encoded inside another URL (``/login?next=/shop/redeem%3Ft%3D...``)
_TOKEN_QUERY = re.compile(r"((?:[?&]|%%3F|%%26)(?:%s)(?:=|%%3D))([^&%%#\s\"]*)" % "|".join(TOKEN_QUERY_PARAMETERS),
                          re.IGNORECASE)


def mask_tokens(text: str) -> str:
    """``text`` (a URL, a request line, a Referer) with every token-bearing value replaced by ``***``."""
    if "/" not in text and "=" not in text:
        return text
    text = _TOKEN_PATH.sub(r"\1***", text)
    text = _TOKEN_QUERY.sub(r"\1***", text)
    return text


def _url_carries_token() -> bool:
    return mask_tokens(request.full_path) != request.full_path


def secure_headers(response):
    """``after_request``: HSTS over HTTPS; no path or query in the Referer from token-bearing pages."""
    max_age = current_app.config.get("HSTS_MAX_AGE", 0)
    if request.is_secure and max_age:
        response.headers.setdefault("Strict-Transport-Security", f"max-age={max_age}")
    if _url_carries_token():
        # "strict-origin", not "no-referrer": the page's own forms still send the origin, which
        # Flask-WTF's HTTPS check of the Referer needs; the token never leaves in a Referer.
        response.headers["Referrer-Policy"] = "strict-origin"
    return response


def public_url(endpoint: str, **values) -> str:
    """The absolute URL of ``endpoint``: under ``PUBLIC_BASE_URL`` when it is configured (a QR
    printed on a card must not point wherever the request's Host header said), else the request's."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        return url_for(endpoint, _external=True, **values)
    return base.rstrip("/") + url_for(endpoint, _external=False, **values)


def init_app(app) -> None:
    app.json = GuardedJSONProvider(app)
    # First of all hooks: before the limiter's keys, CSRF and the login read any of the input.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_unsafe_input)
    app.after_request(secure_headers)


def not_modified(etag: str, *, public: bool, max_age: int = 5):
    """A 304 answer when the request's ``If-None-Match`` names ``etag`` (else None): a phone that
    reloads a page it has gets no body, and the page is not built."""
    if etag not in request.if_none_match:
        return None
    return cache_headers(current_app.response_class(status=304), etag, public=public, max_age=max_age)


def cache_headers(response, etag: str, *, public: bool, max_age: int = 5):
    """ETag and Cache-Control: a proxy may share a public page for ``max_age`` seconds; a logged-in
    view is the browser's alone and is checked again each time."""
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"public, max-age={max_age}" if public else "private, no-cache"
    response.vary.add("Cookie")
    return response
