"""Throttling (moralbank.throttle): password guesses can't be turned into a lock-out and are counted
once for web and API, exactly under concurrency (memory and real Redis); one code-lookup budget per
clerk across web and API; card PINs per (card, address) on both; Redis down keeps shops working."""
from __future__ import annotations

import logging
import os
import threading
import uuid

import pytest
from sqlalchemy import select

from support import DEMO_PASSWORD, PHONES, csrf_from, redis_down_reason, session_of

API = "/api/v1"
REDIS_URL = "redis://127.0.0.1:6379/0"
OWNER, STRANGER, NAT = "10.20.0.2", "203.0.113.66", "10.20.0.1"


def at(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def api_login(client, phone: str, password: str, address: str):
    return client.post(f"{API}/auth/tokens", json={"phone": phone, "password": password}, **at(address))


def web_form(app, path: str, address: str):
    """A fresh browser at ``address`` that has opened ``path``: (client, csrf token)."""
    browser = app.test_client()
    return browser, csrf_from(browser.get(path, **at(address)).get_data(as_text=True))


def web_login(app, phone: str, password: str, address: str):
    browser, token = web_form(app, "/login", address)
    return browser.post("/login", data={"phone": phone, "password": password, "csrf_token": token}, **at(address))


def assert_api_throttled(response) -> None:
    assert response.status_code == 429, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited" and "分钟后再试" in error["message"], error
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60


def assert_web_throttled(response) -> None:
    assert response.status_code == 429
    assert "尝试次数太多" in response.get_data(as_text=True)
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60


def require_redis():
    """Outside CI a missing Redis skips; in CI (.ci/run starts Redis) it is a failure."""
    reason = redis_down_reason(REDIS_URL)
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    assert reason is None, reason


# --- password guesses: no lock-out ---------------------------------------------------------------------

def test_a_stranger_guessing_cannot_lock_the_owner_out(app, client):
    phone = PHONES["committee"]
    for _ in range(5):
        assert api_login(client, phone, "wrong-password", STRANGER).status_code == 401
    assert_api_throttled(api_login(client, phone, "wrong-password", STRANGER))
    assert_api_throttled(api_login(client, phone, DEMO_PASSWORD, STRANGER))  # the pair waits, right or wrong
    assert_web_throttled(web_login(app, phone, DEMO_PASSWORD, STRANGER))
    # The owner, on their own phone, is not held up by the stranger's failures.
    assert api_login(client, phone, DEMO_PASSWORD, OWNER).status_code == 201
    answer = web_login(app, phone, DEMO_PASSWORD, OWNER)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/home")


def test_failures_behind_one_village_address_do_not_lock_the_village_out(app, client):
    """55 wrong passwords on 11 phones from the village's one NAT address (the old per-address
    limit was 50): the others behind it still log in."""
    for n in range(11):
        for _ in range(5):
            assert api_login(client, f"1391234{n:04d}", "wrong-password", NAT).status_code == 401
    assert api_login(client, PHONES["resident"], DEMO_PASSWORD, NAT).status_code == 201
    assert web_login(app, PHONES["grid"], DEMO_PASSWORD, NAT).status_code == 302


@pytest.mark.parametrize("app_config", [{"LOGIN_LIMIT_PER_ACCOUNT": "3 per 15 minutes"}])
def test_past_the_account_ceiling_failing_addresses_wait_and_the_owner_gets_in(app, client):
    phone = PHONES["grid"]
    for n in range(3):
        assert api_login(client, phone, "wrong-password", f"198.51.100.{n}").status_code == 401
    # The account is at its ceiling: an address that has failed on it waits ...
    assert_api_throttled(api_login(client, phone, "wrong-password", "198.51.100.0"))
    # ... one that has not gets a single try (a botnet gets one guess per address) ...
    assert api_login(client, phone, "wrong-password", "198.51.100.9").status_code == 401
    assert_api_throttled(api_login(client, phone, DEMO_PASSWORD, "198.51.100.9"))
    # ... and the owner, from an address that never failed, logs in.
    assert api_login(client, phone, DEMO_PASSWORD, OWNER).status_code == 201
    assert web_login(app, phone, DEMO_PASSWORD, OWNER).status_code == 302


@pytest.mark.parametrize("app_config", [{"LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS": "4 per 15 minutes"}])
def test_web_and_api_logins_and_password_changes_share_one_count(app, client):
    phone = PHONES["resident"]
    assert api_login(client, phone, "wrong-password", OWNER).status_code == 401
    assert web_login(app, phone, "wrong-password", OWNER).status_code == 401
    # A thief holding a session guesses the current password on the page ...
    browser, token = web_form(app, "/login", OWNER)
    assert browser.post("/login", data={"phone": phone, "password": DEMO_PASSWORD, "csrf_token": token},
                        **at(OWNER)).status_code == 302  # a right password does not count
    token = csrf_from(browser.get("/account/password", **at(OWNER)).get_data(as_text=True))
    guess = {"current_password": "guess-1-xxxx", "new_password": "Tea-garden-2031", "confirm": "Tea-garden-2031",
             "csrf_token": token}
    assert browser.post("/account/password", data=guess, **at(OWNER)).status_code == 422
    # ... and through the API.
    bearer = {"Authorization": "Bearer " + api_login(client, phone, DEMO_PASSWORD, OWNER).get_json()["token"]}
    answer = client.post(f"{API}/auth/password", headers=bearer, **at(OWNER),
                         json={"current_password": "guess-2-xxxx", "new_password": "Tea-garden-2031"})
    assert answer.status_code == 422
    # Four failures, two ways each: every way in now waits at this address.
    assert_api_throttled(api_login(client, phone, DEMO_PASSWORD, OWNER))
    assert_web_throttled(web_login(app, phone, DEMO_PASSWORD, OWNER))
    assert_web_throttled(browser.post("/account/password", data=dict(guess, current_password=DEMO_PASSWORD),
                                      **at(OWNER)))
    assert_api_throttled(client.post(f"{API}/auth/password", headers=bearer, **at(OWNER),
                                     json={"current_password": DEMO_PASSWORD, "new_password": "Tea-garden-2031"}))
    assert api_login(client, phone, DEMO_PASSWORD, STRANGER).status_code == 201


# --- exact under concurrency -----------------------------------------------------------------------------

class TestConcurrentGuesses:
    @pytest.fixture(params=["memory", "redis"])
    def storage(self, request):
        return request.param

    @pytest.fixture
    def app_config(self, storage, tmp_path):
        config = {"UPLOAD_FOLDER": str(tmp_path / "uploads"),
                  "LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS": "4 per 15 minutes"}
        if storage == "redis":
            require_redis()
            config["RATELIMIT_STORAGE_URI"] = REDIS_URL
        return config

    def test_concurrent_guesses_get_exactly_the_budget(self, app, storage):
        """Twelve wrong passwords at once (six by the form, six by the API) from one address: exactly the
        budget of four is checked, eight wait. A check before and a count after would let all through."""
        phone, threads, barrier = PHONES["committee"], 12, threading.Barrier(12)
        forms = [web_form(app, "/login", STRANGER) for _ in range(threads // 2)]
        statuses: list[int] = []

        def guess(n: int):
            if n % 2:
                browser, token = forms[n // 2]
                send = lambda: browser.post("/login", **at(STRANGER),  # noqa: E731
                                            data={"phone": phone, "password": f"wrong-{n}", "csrf_token": token})
            else:
                browser = app.test_client()
                send = lambda: api_login(browser, phone, f"wrong-{n}", STRANGER)  # noqa: E731
            barrier.wait()
            statuses.append(send().status_code)

        workers = [threading.Thread(target=guess, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(statuses) == [401] * 4 + [429] * 8, statuses

        if storage == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            prefix = app.config["RATELIMIT_KEY_PREFIX"]
            try:
                assert int(client.get(f"{prefix}:login-pair:{phone}:{STRANGER}")) == threads  # counted in Redis
            finally:
                keys = list(client.scan_iter(match=f"{prefix}:*"))
                if keys:
                    client.delete(*keys)
                client.close()


# --- payment codes and card PINs -------------------------------------------------------------------------

def _clerk_store(api) -> int:
    return api.get(f"{API}/me", "clerk").get_json()["store"]["id"]


@pytest.mark.parametrize("app_config", [{"CODE_LOOKUP_LIMIT": "4 per minute"}])
def test_one_code_lookup_budget_per_clerk_across_web_and_api(app, client, api, auth):
    store = _clerk_store(api)
    assert api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": "10000001"}).status_code == 404
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": "10000002", "points": 1}).status_code == 404
    assert auth.login("clerk").status_code == 302
    assert client.get("/shop/redeem?code=10000003").status_code == 404
    assert client.get("/shop/redeem?code=10000004").status_code == 404
    # Four lookups, four ways: the fifth waits, whichever way it comes.
    for answer in (api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": "10000005"}),
                   api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": "10000006", "points": 1})):
        assert answer.status_code == 429 and answer.get_json()["error"]["code"] == "rate_limited"
        assert int(answer.headers["Retry-After"]) > 0
    page = client.get("/shop/redeem?code=10000007")
    assert page.status_code == 429 and "操作太频繁" in page.get_data(as_text=True)
    # Another user's budget is their own (the committee is no clerk: 403, not 429).
    assert api.post(f"{API}/stores/{store}/redemption-previews", "committee",
                    json={"code": "10000008"}).status_code == 403


@pytest.mark.parametrize("app_config", [{"PIN_LIMIT_PER_CARD_AND_ADDRESS": "3 per minute"}])
def test_card_pins_count_once_per_card_and_address_on_web_and_api(app, client, api, auth):
    from moralbank.stores.models import HouseholdCard

    store = _clerk_store(api)
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    card = api.post(f"{API}/households/{household}/cards", "committee", json={"pin": "5173"}).get_json()
    assert auth.login("clerk").status_code == 302
    page = client.get(f"/shop/card?t={card['token']}", **at(OWNER))
    token = csrf_from(page.get_data(as_text=True))

    def web_pin(pin, address=OWNER):
        return client.post("/shop/card", data={"t": card["token"], "pin": pin, "csrf_token": token}, **at(address))

    def api_pin(pin, address=OWNER):
        return client.post(f"{API}/stores/{store}/card-unlocks", json={"card": card["token"], "pin": pin},
                           headers=api.headers("clerk", **{"Idempotency-Key": uuid.uuid4().hex}), **at(address))

    assert web_pin("1111").status_code == 200  # the page again, saying the PIN is wrong
    assert api_pin("2222").status_code == 403
    assert web_pin("3333").status_code == 200
    assert api_pin("5173").status_code == 429
    assert web_pin("5173").status_code == 429
    with session_of(app) as session:
        assert session.scalar(select(HouseholdCard.failed_pins).where(HouseholdCard.id == card["id"])) == 3
    # The same card at another address has its own count (the card itself locks after five wrong PINs).
    assert api_pin("5173", address=STRANGER).status_code == 201


# --- Redis down ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"}])
def test_logins_and_shops_keep_working_when_redis_is_down(app, client, api, auth, caplog, monkeypatch):
    # Alembic's fileConfig (the test databases are migrated in this process) disables the loggers that
    # existed then; a served app migrates in another process, so its loggers are live.
    for name in ("moralbank.throttle", "flask-limiter"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    caplog.set_level(logging.INFO)
    store = _clerk_store(api)  # logins through the API
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    code = api.post(f"{API}/redemption-codes", "resident").get_json()["code"]
    preview = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": code})
    assert preview.status_code == 200, preview.get_json()
    redeemed = api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": code, "points": 1})
    assert redeemed.status_code == 201, redeemed.get_json()
    card = api.post(f"{API}/households/{household}/cards", "committee", json={"pin": "5173"}).get_json()
    unlocked = api.post(f"{API}/stores/{store}/card-unlocks", "clerk", json={"card": card["token"], "pin": "5173"})
    assert unlocked.status_code == 201, unlocked.get_json()
    assert auth.login("clerk").status_code == 302
    assert client.get(f"/shop/redeem?code={unlocked.get_json()['code']}").status_code == 200
    # Still throttled, in memory: a stranger's guesses wait after five.
    for _ in range(5):
        assert api_login(client, PHONES["committee"], "wrong-password", STRANGER).status_code == 401
    assert_api_throttled(api_login(client, PHONES["committee"], "wrong-password", STRANGER))
    # Said once each (the counters and flask-limiter), not once per request.
    ours = [r for r in caplog.records if r.name == "moralbank.throttle" and r.levelno >= logging.ERROR]
    assert len(ours) == 1 and "Redis is unreachable" in ours[0].getMessage()
    theirs = [r for r in caplog.records if r.name == "flask-limiter" and "falling back" in r.getMessage()]
    assert len(theirs) == 1 and theirs[0].levelno == logging.WARNING
