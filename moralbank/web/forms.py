"""Helpers shared by the HTML views: one-time form submissions and the user's scope."""
from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request
from flask_babel import gettext as _
from flask_login import current_user

from ..errors import Invalid, range_words
from ..idempotency import request_body, run_once
from ..people import access
from ..people.models import Area, Household


_NUMBER = re.compile(r"[0-9]{1,15}")
_SIGNED = re.compile(r"-?[0-9]{1,15}")


#: the largest id a 4-byte INTEGER column holds (PostgreSQL's ``integer``)
MAX_ID = 2**31 - 1


def bounded_int(text) -> int:
    """``int`` for ``request.args.get(type=…)``: ASCII digits only (not "²"), at most ``MAX_ID``, so
    no value overflows a database integer; anything else is a ValueError (the argument is ignored)."""
    if text is None or not _NUMBER.fullmatch(str(text).strip()) or int(str(text).strip()) > MAX_ID:
        raise ValueError(text)
    return int(str(text).strip())


def _whole(text, signed: bool = False) -> int | None:
    value = "" if text is None else str(text).strip()
    if not (_SIGNED if signed else _NUMBER).fullmatch(value) or abs(int(value)) > MAX_ID:
        return None
    return int(value)


def form_int(text, field: str, label: str | None = None, *, low: int | None = None, high: int | None = None,
             signed: bool | None = None) -> int:
    """A whole number from a form field, or a readable 422 that names the field as the page labels it
    (``label``) and says the allowed range; ``fields`` is keyed by the field's name, so the page shows
    the message next to it."""
    number = _whole(text, signed if signed is not None else (low is not None and low < 0))
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        words = range_words(low, high)
        raise Invalid(_("「%(field)s」%(words)s", field=label or field, words=words), fields={field: [words]})
    return number


def form_choice(text, field: str, label: str) -> int:
    """The id picked in a select (household, rule, item), or a readable 422 asking to pick one."""
    number = _whole(text)
    if number is None:
        raise Invalid(_("请选择「%(field)s」", field=label), fields={field: [_("请选择")]})
    return number


def form_ints(values) -> list[int]:
    """The whole numbers among repeated form values (ticked boxes), ignoring anything else."""
    return [int(v) for v in values if _NUMBER.fullmatch(str(v).strip()) and int(str(v).strip()) <= MAX_ID]


def new_form_key() -> str:
    """A fresh idempotency key for a form about to be shown (the hidden ``idempotency_key`` field)."""
    return uuid.uuid4().hex


def submit_once(action):
    """Run a form's ``action()`` once per hidden ``idempotency_key``.

    ``action`` returns ``{"redirect": url, "message": text}``. A double tap or a
    resubmitted page replays the first answer (same redirect) and writes nothing.
    """
    payload, _status, replayed = run_once(current_user, request.form.get("idempotency_key"), request_body(),
                                          lambda: (action(), 200), required=True)
    if replayed:
        flash(_("这张表已经提交过了，没有重复记录。"), "info")
    elif payload.get("message"):
        flash(payload["message"], payload.get("category", "success"))
    return redirect(payload["redirect"])


def confirmed() -> bool:
    """Whether the posted form carries ``confirm=1``: the second step of an action that cannot be
    undone (publish, settle, reverse, revoke a card). See ``preview``."""
    return request.form.get("confirm") == "1"


def preview(title: str, lines: list[str], *, back: str, button: str | None = None,
            refusal: str | None = None):
    """The first step of an action that cannot be undone: a page (200) that says what would happen
    (``lines``) and a 确认 button that posts the same form again, every field as it came (CSRF
    token and idempotency key included) plus ``confirm=1``. Nothing is written. With ``refusal``
    the page says why it would not be done and offers no button (422). Works without JavaScript.

    A view calls it when ``confirmed()`` is false and runs its action otherwise.
    """
    fields = [(name, value) for name, values in request.form.lists() if name != "confirm" for value in values]
    page = render_template("confirm.html", title=title, lines=lines, fields=fields, back=back,
                           action=request.full_path if request.query_string else request.path,
                           button=button or _("确认"), refusal=refusal)
    return page, 422 if refusal else 200


def committee_village() -> Area:
    """The village the logged-in committee member (or admin) works for; 403 otherwise."""
    village = access.committee_village(current_user)
    if village is None:
        abort(403)
    return village


def resident_household() -> Household:
    """The household of the logged-in resident; 403 for anyone who lives in none."""
    household = access.own_household(current_user)
    if household is None:
        abort(403)
    return household


def grid_village() -> Area:
    """The village of a grid manager (or committee member, who may do what grid managers do)."""
    village = access.first_village(current_user, ("grid", "committee", "admin"))
    if village is None:
        abort(403)
    return village


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None: the one check for every ``next`` or
    ``back`` a page redirects to. Browsers read ``//host``, ``/\\host`` and ``\\\\host`` as other
    hosts and drop tabs and newlines inside a URL, so any backslash or control character, a
    scheme or a host refuses the target."""
    if not target or not isinstance(target, str):
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7f for char in target) or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
