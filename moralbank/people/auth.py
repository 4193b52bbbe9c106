"""Authentication: password hashes, web sessions (flask-login) and API bearer tokens."""
from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
from datetime import datetime
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, g, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload

from ..audit.service import record as audit
from ..database import keep_loaded, utcnow, write_transaction
from ..errors import Invalid
from ..extensions import db
from . import access
from .models import ApiToken, RoleGrant, User

#: ``MORALBANK_TEST_FAST_HASHES=1`` (set by the test suite's conftest) makes new hashes with
#: argon2id's cheapest parameters: the suite logs in thousands of times and each default hash costs
#: ~50 ms of CPU. Never under ``MORALBANK_ENV=production``. Hashes carry their parameters, so either
#: hasher verifies the other's.
_FAST = (os.environ.get("MORALBANK_TEST_FAST_HASHES") == "1"
         and os.environ.get("MORALBANK_ENV", "development") != "production")
_hasher = (PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1) if _FAST
           else PasswordHasher())  # argon2id, the library's current defaults

#: Reserves one guess at an account's password: ``reserve(phone)`` returns a guess with
#: ``succeeded()`` or raises Throttled. The budget is per address, which is the request plumbing's
#: business (``throttle.password_guess``), so ``create_app`` registers it here rather than this
#: module importing the throttle (which imports this one). Without it no password is checked.
_reserve_guess = None


def count_password_guesses(reserve) -> None:
    """Register the counter of password guesses (``create_app`` registers ``throttle.password_guess``)."""
    global _reserve_guess
    _reserve_guess = reserve


def _password_guess(phone: str):
    if _reserve_guess is None:
        # Fail closed: checking passwords with no count of guesses would open the door to brute force.
        raise RuntimeError("no password guess counter registered (create_app registers throttle.password_guess)")
    return _reserve_guess(phone)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A real hash to verify against when the phone is unknown, so timing does not tell. Made on first
    use, not at import (it costs as much as a login, in every worker that starts)."""
    return _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    """True when ``password`` matches ``user.password_hash`` (also used for card PINs). Changes nothing."""
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return user is not None


def normalize_phone(phone) -> str:
    """ASCII digits only (full-width ０–９ from a Chinese keyboard become 0–9), without a +86 prefix."""
    digits = "".join(str(unicodedata.decimal(ch)) for ch in str(phone or "") if unicodedata.decimal(ch, None) is not None)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits


def authenticate(phone, password, *, via: str = "web") -> User | None:
    """The active user with this phone and password, or None. Every attempt goes to the audit log
    (the phone masked; an unknown phone and a wrong password look the same to the caller)."""
    # The guess is counted before the hash is checked (Throttled if over the budget), handed back if right.
    guess = _password_guess(normalize_phone(phone))
    user = db.session.scalar(select(User).where(User.phone == normalize_phone(phone)))
    accepted = check_password(user, str(password or "")) and user.active
    if accepted:
        guess.succeeded()
    village_id = _village_of(user) if user else None
    with write_transaction():
        if accepted:
            user.last_login_at = utcnow()
        if accepted and _hasher.check_needs_rehash(user.password_hash):
            # The hashing parameters were raised since this hash was made: store a fresh one.
            user.password_hash = hash_password(str(password))
        masked = normalize_phone(phone)
        audit("auth.login" if accepted else "auth.login_failed", actor=user if accepted else None,
              village_id=village_id, target=user,
              detail={"via": via, "phone": (masked[:3] + "****" + masked[-4:]) if len(masked) >= 8 else "?"})
    return user if accepted else None


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User) -> tuple[str, ApiToken]:
    """A new bearer token for ``user``; only its hash is stored. Returns (token, record)."""
    token = secrets.token_urlsafe(32)
    record = ApiToken(user_id=user.id, token_hash=_token_digest(token),
                      expires_at=utcnow() + current_app.config["API_TOKEN_TTL"],
                      created_from=request.remote_addr if request else None)
    with write_transaction():
        db.session.add(record)
    return token, record


def revoke_token(record: ApiToken) -> None:
    with write_transaction():
        record.revoked_at = utcnow()


def _end_sessions(user: User) -> int:
    """Inside a write transaction: every web session (cookie) of ``user`` stops working and every
    bearer token is revoked. Returns the number of tokens revoked."""
    user.session_version = (user.session_version or 0) + 1
    return db.session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                              .values(revoked_at=utcnow())).rowcount


def log_out(user: User, *, via: str = "web") -> None:
    """End the web session everywhere: a copied cookie is no use after logout (the session id carries
    ``session_version``). API tokens are left alone: they are ended one by one (DELETE /auth/tokens/current)."""
    with write_transaction():
        user.session_version = (user.session_version or 0) + 1
        audit("auth.logout", actor=user, village_id=_village_of(user), target=user, detail={"via": via})


def change_password(user: User, current: str, new: str, *, via: str = "web") -> None:
    """Set a new password after checking the current one. Every session and token of the user ends;
    the caller logs this device in again. Raises Invalid with the field at fault, Throttled when the
    current password was guessed too often (the same count as logins)."""
    from .passwords import password_problem

    guess = _password_guess(user.phone)
    if not check_password(user, str(current or "")):
        raise Invalid(_("原密码不对"), fields={"current_password": [_("原密码不对")]})
    guess.succeeded()
    problem = password_problem(new, phone=user.phone)
    if problem is None and new == current:
        problem = _("新密码不能和原密码一样")
    if problem:
        raise Invalid(problem, fields={"new_password": [problem]})
    with write_transaction():
        user.password_hash = hash_password(new)
        tokens = _end_sessions(user)
        audit("auth.password_changed", actor=user, village_id=_village_of(user), target=user,
              detail={"via": via, "tokens_revoked": tokens})


def _village_of(user: User) -> int | None:
    return access.home_village_id(user)


@lru_cache(maxsize=1)
def _bearer_query():
    """Token, user and grants in one query (built once; the grants by a joined load)."""
    return (select(ApiToken, User).join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == bindparam("digest"))
            .options(joinedload(User.grants).joinedload(RoleGrant.village), joinedload(User.kin)))


def user_from_bearer() -> tuple[User | None, ApiToken | None]:
    """The user of the request's ``Authorization: Bearer`` token, if valid: one query for the token,
    its user and the user's grants, kept loaded for the whole request (the commits of its write
    transactions do not expire them, see ``database.keep_loaded``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, None
    found = db.session.execute(_bearer_query(), {"digest": _token_digest(token.strip())}).unique().first()
    if found is None:
        return None, None
    record, user = found
    now: datetime = utcnow()
    if record.revoked_at is not None or record.expires_at <= now or not user.active:
        return None, None
    keep_loaded(record, user, *user.grants, *(grant.village for grant in user.grants if grant.village is not None),
                *user.kin)
    return user, record


def request_user() -> User | None:
    """The user of this request: bearer token (API) or session cookie (web)."""
    if "api_user" in g:
        return g.api_user
    if current_user and current_user.is_authenticated:
        return current_user._get_current_object()
    return None


def record_denial(reason: str) -> None:
    """Log an authorisation refusal (a 403) in a transaction of its own, after rolling back
    whatever the refused request had started (it changes nothing).

    The route's pattern and its numeric arguments are kept, not the raw path, so a one-time token
    in a URL (a payment code link) never reaches the log. It lives here, not in ``audit``, because
    it needs the request's user: the audit log imports no domain."""
    try:
        db.session.rollback()
        user = request_user()
        rule = request.url_rule.rule if request.url_rule is not None else None
        arguments = {key: value for key, value in (request.view_args or {}).items() if isinstance(value, int)}
        village_id = access.home_village_id(user)
        with write_transaction():
            audit("auth.denied", actor=user, village_id=village_id,
                  detail={"method": request.method, "route": rule, "args": arguments, "reason": reason})
    except Exception:  # the refusal itself must still reach the user
        db.session.rollback()
        current_app.logger.exception("could not record an authorisation denial")


def init_app(app, login_manager) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    login_manager.login_message = None
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def _load_user(session_id: str):
        user_id, _, version = str(session_id).partition(":")
        if not user_id.isdigit():
            return None
        user = db.session.get(User, int(user_id), options=[joinedload(User.grants), joinedload(User.kin)])
        if user is None or not user.active or str(user.session_version) != version:
            return None
        keep_loaded(user, *user.grants, *user.kin)
        return user


def set_text_size(user: User, size: str) -> None:
    """Keep the 大字 choice ("large" or "normal") on the account, so it follows the user to
    another phone. Not audited: it changes only how pages look to this user."""
    with write_transaction():
        user.text_size = size
