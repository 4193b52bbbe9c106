"""One JSON error envelope for every API failure:
``{"error": {"code": "...", "message": "...", "fields": {...}}}``."""
from __future__ import annotations

import re

from flask import current_app, jsonify, request
from flask_babel import gettext as _
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect

from ..errors import DomainError
from ..i18n import N_
from ..throttle import Throttled
from . import bp

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
}


def envelope(code: str, message: str, status: int, fields: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
    response.status_code = status
    return response


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def domain_error(error: DomainError):
    return envelope(error.code, error.message, error.status, error.fields)


@bp.errorhandler(Throttled)
def throttled(error: Throttled):
    """A refused password guess in the API: 429 in the envelope, with Retry-After (the web's page
    is drawn by ``throttle.init_app``; a blueprint's handler comes first for the API's requests)."""
    response = domain_error(error)
    response.headers["Retry-After"] = str(error.retry_after)
    return response


#: the words the pages use for the API's fields, so a message a person may read names them so
FIELD_LABELS = {
    "points": N_("分值"), "quantity": N_("次数"), "household_id": N_("哪一户"), "rule_id": N_("哪一项"),
    "title": N_("名称"), "category": N_("类别"), "cap": N_("上限"), "note": N_("说明"), "occurred_on": N_("日期"),
    "reason": N_("理由"), "code": N_("付款号码"), "notice_days": N_("公示天数"),
    "code_ttl_seconds": N_("付款码有效秒数"), "approval_threshold": N_("需要审核的分值"),
    "star_thresholds": N_("星级分数线"), "photo_required": N_("需要照片"),
}


def _first_words(messages) -> str | None:
    if isinstance(messages, str):
        return messages
    values = messages.values() if isinstance(messages, dict) else messages if isinstance(messages, list) else ()
    return next((words for words in map(_first_words, values) if words), None)


def validation_error(error: ValidationError):
    """422 ``invalid``; the message names the refused fields by their labels, and says the allowed
    range where the refusal is one of the pages' own ("「次数」要填 1 到 50 的整数")."""
    fields = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    labelled = [_(FIELD_LABELS[name]) for name in fields if name in FIELD_LABELS]
    message = _("输入有误，请检查标出的字段")
    if labelled:
        words = _first_words(fields[next(name for name in fields if name in FIELD_LABELS)])
        if len(fields) == 1 and words and not re.search("[A-Za-z]", words):
            message = _("「%(field)s」%(words)s", field=labelled[0], words=words)
        else:
            message = _("输入有误，请检查：%(fields)s", fields="、".join(f"「{label}」" for label in labelled))
    return envelope("invalid", message, 422, fields)


def _routable_with_another_method(error: HTTPException) -> bool:
    """Whether the path of a 405 really routes with one of the methods it lists.

    Werkzeug answers 405 when a path's rule for this method refuses a value (``<int:>`` past its
    maximum) and the same path has a rule for another method: that is a 404, not a 405.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    for method in getattr(error, "valid_methods", None) or ():
        try:
            adapter.match(method=method)
        except RequestRedirect:  # routes, after a redirect
            return True
        except HTTPException:
            continue
        return True
    return False


def http_error(error: HTTPException):
    if error.code == 405 and not _routable_with_another_method(error):
        error = NotFound()
    status = error.code or 500
    messages = {
        400: _("请求格式不对"), 401: _("请先登录"), 403: _("没有权限"), 404: _("找不到"),
        405: _("不支持这个方法"), 413: _("上传的内容太大"), 415: _("请用 JSON 格式提交"),
        429: _("操作太频繁，请稍后再试"),
    }
    code = _HTTP_CODES.get(status, "error")
    if error.__class__.__name__ == "CSRFError":
        code = "csrf_failed"
    response = envelope(code, messages.get(status, error.description or ""), status)
    # Keep the exception's own headers (Allow on 405, Retry-After, WWW-Authenticate), not its HTML type.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def server_error(error: Exception):  # pragma: no cover - only on bugs
    current_app.logger.exception("unhandled error on %s", request.path)
    return envelope("server_error", _("服务器出错了，请稍后再试"), 500)
