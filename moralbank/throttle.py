"""Throttling: every rate limit of the service, its key and its budget, in one place shared by the web
pages and the API. The budgets are settings (``config.py``); no call site names a number.

- **Password guesses** (login form, ``POST /auth/tokens``, the password page, ``POST /auth/password``):
  one counter of failures per (account, address) pair, whichever way the password was typed. A pair
  over ``LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS`` waits (429 + Retry-After); it cannot lock anyone else
  out. Past the account's ceiling (``LOGIN_LIMIT_PER_ACCOUNT``, failures from every address), an
  address that has already failed on the account waits too, while an address that has not gets its
  try: the account's owner on their own phone still logs in, a botnet gets one guess per address.
- **Payment-code lookups** (API preview and redemption, the web redeem page and its confirm): one
  budget per clerk, ``CODE_LOOKUP_LIMIT``, across all of them. Every lookup counts, not only the
  failed ones: a hit also shows a household's name and balance, a village shop serves far fewer
  customers a minute than the budget allows, and counting every request keeps the count exact
  (an increment before the lookup, not a check before and a count after).
- **Paper-card PINs** (API card unlock, the web card page): ``PIN_LIMIT_PER_CARD_AND_ADDRESS`` per
  (card, address); the card itself locks after a few wrong PINs in a row (stores.service).

Counts are exact under concurrency: a guess is reserved by an atomic increment before the password
is checked (one Lua script in Redis, a lock in memory) and handed back when it was right, so N
requests at once get at most the budget through. When Redis is unreachable, counting goes on in
this process's memory (logged once, at ERROR) so logins and shops keep working; flask-limiter's
own in-memory fallback (``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``) does the same for the lookup and
PIN budgets.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

from flask import current_app, make_response, render_template, request
from flask_babel import gettext as _
from limits import parse

from .errors import DomainError
from .extensions import limiter

log = logging.getLogger(__name__)

_EXTENSION = "moralbank.throttle"

# INCRBY and its window in one step: the first increment of a key starts its window; the answer is the
# count and the seconds left in the window.
_INCR_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""


class Throttled(DomainError):
    """Too many attempts: try again in ``retry_after`` seconds."""

    code, status = "rate_limited", 429

    def __init__(self, retry_after: int):
        minutes = max(math.ceil(retry_after / 60), 1)
        super().__init__(_("尝试次数太多，请 %(minutes)s 分钟后再试", minutes=minutes))
        self.retry_after = max(int(retry_after), 1)


class _MemoryCounts:
    """Fixed-window counters in this process, behind a lock (so an increment and its read are one step)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def incr(self, key: str, window: int, amount: int = 1) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            count, ends = self._counts.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + window
                if len(self._counts) > 10_000:  # forget ended windows now and then
                    self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count += amount
            self._counts[key] = (count, ends)
        return count, max(math.ceil(ends - now), 1)


class _RedisCounts:
    def __init__(self, uri: str):
        import redis

        # Short timeouts: a Redis that does not answer must not hold a login for the OS's TCP timeout.
        self.client = redis.Redis.from_url(uri, socket_connect_timeout=1, socket_timeout=1)
        self._script = self.client.register_script(_INCR_SCRIPT)

    def incr(self, key: str, window: int, amount: int = 1) -> tuple[int, int]:
        count, ttl = self._script(keys=[key], args=[amount, window])
        return int(count), max(int(ttl), 1)


class Counters:
    """Redis when the limiter's storage is Redis, memory otherwise. While Redis fails, counting goes on
    in memory (said once at ERROR, and once at WARNING when Redis answers again, tried every
    ``RETRY_SECONDS``)."""

    RETRY_SECONDS = 30

    def __init__(self, storage_uri: str, prefix: str = ""):
        self.prefix = prefix
        self.memory = _MemoryCounts()
        self.redis = _RedisCounts(storage_uri) if storage_uri.startswith(("redis://", "rediss://", "unix://")) \
            else None
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0

    def incr(self, key: str, window: int, amount: int = 1) -> tuple[int, int]:
        """Add ``amount`` to ``key`` (a window of ``window`` seconds starts at its first count); returns
        the count and the seconds left in the window."""
        key = f"{self.prefix}:{key}" if self.prefix else key
        if self.redis is not None and time.monotonic() >= self._retry_at:
            from redis.exceptions import RedisError

            try:
                answer = self.redis.incr(key, window, amount)
            except RedisError as error:
                with self._lock:
                    self._retry_at = time.monotonic() + self.RETRY_SECONDS
                    first, self._down = not self._down, True
                if first:
                    log.error("Redis is unreachable (%s): login throttling counts in this process's memory "
                              "until it answers again", error)
            else:
                with self._lock:
                    back, self._down = self._down, False
                if back:
                    log.warning("Redis answers again: login throttling counts in Redis")
                return answer
        return self.memory.incr(key, window, amount)


def init_app(app) -> None:
    """The counters of ``app`` and the web's answer to a refused guess: 429 with Retry-After and a
    page saying how long to wait. The API answers its own with the JSON envelope (``api.errors``):
    this module sits below the edges and imports none of them."""
    app.extensions[_EXTENSION] = Counters(app.config["RATELIMIT_STORAGE_URI"],
                                          app.config.get("RATELIMIT_KEY_PREFIX") or "")

    @app.errorhandler(Throttled)
    def _throttled(error: Throttled):
        response = make_response(render_template("error.html", status=429, message=error.message), 429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    if not app.config.get("RATELIMIT_HEADERS_ENABLED"):
        app.after_request(_retry_after)


def _retry_after(response):
    """``after_request``: a 429 of the limiter says when to come back (``Retry-After``). With the
    limiter's own headers off (``RATELIMIT_HEADERS_ENABLED``, the default), an answer that is not
    refused costs one storage round trip (the hit), not three (the hit, then the window's count and
    expiry for X-RateLimit-* headers on every answer)."""
    if response.status_code != 429 or "Retry-After" in response.headers:
        return response
    from .extensions import limiter

    try:
        current = limiter.current_limit
        if current is not None:
            response.headers["Retry-After"] = str(max(1, int(current.reset_at - time.time())))
    except Exception:  # the storage went away meanwhile: a refusal still goes out
        response.headers["Retry-After"] = "60"
    return response


def _counters() -> Counters:
    return current_app.extensions[_EXTENSION]


def _address() -> str:
    return request.remote_addr or "-"


# --- password guesses -------------------------------------------------------------------------------

class PasswordGuess:
    """One reserved guess at an account's password; ``succeeded()`` hands it back (a right password
    does not count)."""

    def __init__(self, counters: Counters, reserved: list[tuple[str, int]]):
        self._counters, self._reserved = counters, reserved

    def succeeded(self) -> None:
        for key, window in self._reserved:
            self._counters.incr(key, window, -1)
        self._reserved = []


def password_guess(phone: str) -> PasswordGuess:
    """Reserve one guess at the password of the account ``phone`` (normalised; an unknown phone counts
    the same) from this request's address, or raise Throttled. Shared by the login form, the API's
    token endpoint and both password-change endpoints."""
    config = current_app.config
    pair_limit = parse(config["LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS"])
    account_limit = parse(config["LOGIN_LIMIT_PER_ACCOUNT"])
    counters = _counters()
    phone = phone or "-"
    pair = (f"login-pair:{phone}:{_address()}", pair_limit.get_expiry())
    account = (f"login-account:{phone}", account_limit.get_expiry())
    tried, pair_wait = counters.incr(*pair)
    if tried > pair_limit.amount:
        raise Throttled(pair_wait)
    failed, account_wait = counters.incr(*account)
    if failed > account_limit.amount and tried > 1:
        # The account is under attack and this address has already failed on it: wait. An address
        # with no failure on the account (its owner's phone) still gets its try.
        counters.incr(account[0], account[1], -1)
        raise Throttled(min(pair_wait, account_wait))
    return PasswordGuess(counters, [pair, account])


# --- payment-code lookups and card PINs (flask-limiter, shared scopes) ---------------------------------

def _clerk_key() -> str:
    from .people.auth import request_user

    user = request_user()
    return f"user:{user.id}" if user is not None else f"address:{_address()}"


def _card_key() -> str:
    """The card (its token, hashed: live tokens are not kept in Redis) and the address."""
    body = request.get_json(silent=True) if request.is_json else None
    card = body.get("card") if isinstance(body, dict) else request.values.get("t")
    digest = hashlib.sha256(str(card or "")[:64].encode()).hexdigest()[:32]
    return f"{digest}:{_address()}"


#: One budget of payment-code lookups per clerk, over every way of entering a code (web and API).
code_lookup = limiter.shared_limit(lambda: current_app.config["CODE_LOOKUP_LIMIT"], scope="code-lookup",
                                   key_func=_clerk_key)

#: PIN attempts per (card, address), the web card page and the API card unlock alike.
card_pin = limiter.shared_limit(lambda: current_app.config["PIN_LIMIT_PER_CARD_AND_ADDRESS"], scope="card-pin",
                                key_func=_card_key, methods=["POST"])


def _household_key() -> str:
    """Code minting is counted per household, so its members share one budget."""
    from .people import access
    from .people.auth import request_user

    user = request_user()
    household_ids = access.resident_household_ids(user) if user is not None else set()
    return f"household:{min(household_ids)}" if household_ids else f"user:{getattr(user, 'id', '-')}"


#: Payment codes a household may mint (each takes one 8-digit number of the village's space).
code_mint = limiter.shared_limit(lambda: current_app.config["CODE_MINT_LIMIT"], scope="code-mint",
                                 key_func=_household_key)
