"""The 大字 (large text) setting: which size a page is drawn in (the switch is ``views.text_size``)."""
from __future__ import annotations

from flask import request
from flask_login import current_user

#: the cookie that keeps the 大字 setting in this browser (also on the account when logged in)
TEXT_SIZE_COOKIE = "text_size"
TEXT_SIZES = ("large", "normal")


def large_text() -> bool:
    """Whether pages are drawn in large type: the account's choice when logged in and made, else
    this browser's cookie."""
    if current_user.is_authenticated and current_user.text_size in TEXT_SIZES:
        return current_user.text_size == "large"
    return request.cookies.get(TEXT_SIZE_COOKIE) == "large"
