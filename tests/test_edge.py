"""The edge (issue 10): what an outside attack found on a gunicorn + PostgreSQL/SQLite deployment.

- A NUL character anywhere in the input (PostgreSQL's text cannot hold one) and absurdly nested
  JSON (a RecursionError in the parser) answered 500: now 400, refused before any view, on both
  engines, with the API's JSON envelope or a readable page.
- HSTS over HTTPS; no token in a Referer; a configured public base URL for the URLs in QR codes
  and cards, and TRUSTED_HOSTS required in production.
- Tokens in URLs are masked in gunicorn's access log.
"""
from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from support import PHONES, csrf_from, session_of

API = "/api/v1"
NUL_MESSAGE = "提交的内容里有不允许的字符"


def rule_count(app) -> int:
    from moralbank.awards.models import Rule

    with session_of(app) as session:
        return session.scalar(select(func.count()).select_from(Rule))


def assert_refused(response, code: str = "invalid_characters") -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:500]
    assert response.get_json()["error"]["code"] == code


# --- A. NUL characters and nesting: the reproductions of the report ---------------------------------------------

def test_a_nul_in_a_page_path_is_a_readable_400(client):
    response = client.get("/v/B%00LM")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert NUL_MESSAGE in response.get_data(as_text=True)


def test_a_nul_in_an_api_query_is_a_400_envelope(client):
    assert_refused(client.get(f"{API}/rankings?village=B%00"))
    assert_refused(client.get(f"{API}/rankings?village=BLM&period=2026%0005"))


def test_a_nul_in_a_json_field_is_refused_and_changes_nothing(app, api):
    before = rule_count(app)
    response = api.post(f"{API}/villages/BLM/rules", "committee",
                        json={"category": "volunteer", "title": "义务\x00巡逻", "points": 5})
    assert_refused(response)
    assert NUL_MESSAGE in response.get_json()["error"]["message"]
    # a NUL in a key is as bad as in a value
    assert_refused(api.post(f"{API}/villages/BLM/rules", "committee",
                            json={"category": "volunteer", "title": "巡逻", "points": 5, "x\x00": 1}))
    assert rule_count(app) == before


def test_a_nul_in_a_form_field_is_a_readable_400_and_changes_nothing(app, client, auth):
    auth.login("committee")
    html = client.get("/committee/rules").get_data(as_text=True)
    key = re.findall(r'name="idempotency_key" value="([^"]+)"', html)[0]
    before = rule_count(app)
    response = client.post("/committee/rules/new", data={
        "csrf_token": csrf_from(html), "idempotency_key": key, "category": "volunteer",
        "title": "义务\x00巡逻", "points": "5", "cap_count": "", "cap_period": ""})
    assert response.status_code == 400
    assert NUL_MESSAGE in response.get_data(as_text=True)
    assert rule_count(app) == before


def test_a_nul_in_the_login_form_is_a_400(client):
    response = client.post("/login", data={"phone": "1380000\x000001", "password": "x"})
    assert response.status_code == 400 and NUL_MESSAGE in response.get_data(as_text=True)


def test_a_nul_in_a_header_is_refused(app, client, api):
    from moralbank.awards.models import Award

    with session_of(app) as session:
        awards = session.scalar(select(func.count()).select_from(Award))
    headers = api.headers("committee", **{"Idempotency-Key": "key\x00" + uuid.uuid4().hex})
    response = client.post(f"{API}/awards", headers=headers, json={"household_id": 1, "rule_id": 1})
    assert_refused(response)
    with session_of(app) as session:
        assert session.scalar(select(func.count()).select_from(Award)) == awards


def test_a_nul_in_a_path_segment_of_the_api_is_refused(api):
    assert_refused(api.get(f"{API}/villages/B%00LM/rules", "committee"))


def test_a_lone_surrogate_in_json_is_refused(client):
    response = client.post(f"{API}/auth/tokens", data='{"phone": "\\ud800", "password": "x"}',
                           content_type="application/json")
    assert_refused(response, "invalid_json")


def test_fifty_thousand_nested_brackets_to_the_token_endpoint_are_a_400(client):
    response = client.post(f"{API}/auth/tokens", data="[" * 50_000, content_type="application/json")
    assert_refused(response, "too_deep")


def test_json_nested_past_the_limit_is_refused_even_when_python_could_parse_it(client):
    from moralbank.edge import MAX_JSON_DEPTH

    body = '{"phone": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + ', "password": "x"}'
    assert_refused(client.post(f"{API}/auth/tokens", data=body, content_type="application/json"), "too_deep")


def test_nested_brackets_in_a_web_form_post_are_not_a_500(client):
    response = client.post("/login", data="[" * 50_000, content_type="application/json")
    assert response.status_code == 400


def test_ordinary_input_still_passes(api):
    """The guard refuses only what no column can hold: Chinese, emoji and control characters other than NUL pass."""
    response = api.post(f"{API}/villages/BLM/rules", "committee",
                        json={"category": "volunteer", "title": "义务巡逻 🚜\t", "points": 5})
    assert response.status_code == 201, response.get_json()


# --- C. headers --------------------------------------------------------------------------------------------------

def test_hsts_is_sent_over_https_only(client):
    secure = client.get("/login", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/login").headers


@pytest.mark.parametrize("app_config", [{"HSTS_MAX_AGE": 0}])
def test_hsts_can_be_turned_off(client):
    assert "Strict-Transport-Security" not in client.get("/login", base_url="https://localhost").headers


def _issue_card(app) -> str:
    from moralbank.database import write_transaction
    from moralbank.people.models import Household, User
    from moralbank.stores import service as stores

    with session_of(app) as session:
        committee = session.scalar(select(User).where(User.phone == PHONES["committee"]))
        household = session.scalar(select(Household).order_by(Household.id))
        with write_transaction():
            _card, token = stores.issue_card(committee, household, "2468")
    return token


def test_token_pages_send_no_path_in_the_referer_and_their_forms_still_work_over_https(app, client):
    """A page whose URL holds a card token must not leak it in the Referer of what it loads; its
    PIN form must still pass the HTTPS Referer check of the CSRF guard with the origin alone."""
    token = _issue_card(app)
    https = "https://localhost"
    login_page = client.get("/login", base_url=https).get_data(as_text=True)
    assert client.post("/login", base_url=https, headers={"Referer": "https://localhost/"},
                       data={"phone": PHONES["clerk"], "password": "demo-pass-2026",
                             "csrf_token": csrf_from(login_page)}).status_code == 302
    page = client.get(f"/shop/card?t={token}", base_url=https)
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "strict-origin"
    # what a browser sends under strict-origin: the origin, no path
    response = client.post(f"/shop/card?t={token}", base_url=https, headers={"Referer": "https://localhost/"},
                           data={"csrf_token": csrf_from(page.get_data(as_text=True)), "pin": "2468"})
    assert response.status_code == 302 and "/shop/redeem?code=" in response.headers["Location"]
    # other pages keep same-origin
    assert client.get("/shop", base_url=https).headers["Referrer-Policy"] == "same-origin"


# --- C. the public base URL and trusted hosts ---------------------------------------------------------------------

@pytest.mark.parametrize("app_config", [{"PUBLIC_BASE_URL": "https://jf.example.cn"}])
def test_code_and_card_urls_use_the_public_base_url_not_the_host_header(client, api):
    evil = {"Host": "evil.example"}
    response = client.post(f"{API}/redemption-codes", headers={**api.headers("resident"), **evil,
                                                               "Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["url"].startswith("https://jf.example.cn/shop/redeem?t=")
    response = client.post(f"{API}/households/1/cards", json={"pin": "2468"},
                           headers={**api.headers("committee"), **evil, "Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["url"].startswith("https://jf.example.cn/shop/card?t=")


def test_without_a_public_base_url_the_request_host_is_used(client, api):
    """Development: the URL follows the address the phone used."""
    response = api.post(f"{API}/redemption-codes", "resident")
    assert response.get_json()["url"].startswith("http://localhost/shop/redeem?t=")


def test_production_refuses_to_start_without_trusted_hosts(tmp_path, monkeypatch):
    from moralbank import create_app
    from moralbank.config import ConfigError

    monkeypatch.delenv("TRUSTED_HOSTS", raising=False)
    settings = {"MORALBANK_ENV": "production", "SECRET_KEY": "k" * 40,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}"}
    with pytest.raises(ConfigError, match="TRUSTED_HOSTS"):
        create_app(settings)
    monkeypatch.setenv("TRUSTED_HOSTS", "jf.example.cn")
    assert create_app(settings).config["TRUSTED_HOSTS"] == ["jf.example.cn"]
    # development and tests start without it, as before
    monkeypatch.delenv("TRUSTED_HOSTS")
    assert create_app({**settings, "MORALBANK_ENV": "development"}).config["TRUSTED_HOSTS"] is None


def test_a_public_base_url_without_a_scheme_refuses_to_start(tmp_path):
    from moralbank import create_app
    from moralbank.config import ConfigError

    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        create_app({"TESTING": True, "PUBLIC_BASE_URL": "jf.example.cn",
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}"})
