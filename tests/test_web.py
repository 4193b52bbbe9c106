"""The web front door: login, logout, redirects, CSRF, language, headers."""
from __future__ import annotations

import pytest

from support import PHONES, csrf_from


@pytest.mark.parametrize("who, expected", [
    ("committee", "八里庙村"),
    ("grid", "八里庙屯"),
    ("resident", "我家的积分"),
    ("clerk", "八里庙村积分超市"),
    ("supervisor", "新立村"),
    ("committee_xlc", "新立村"),
])
def test_each_demo_login_reaches_its_home(client, auth, who, expected):
    response = auth.login(who)
    assert response.status_code == 302 and response.headers["Location"].endswith("/home")
    home = client.get("/home", follow_redirects=True)  # the grid manager's and the clerk's 首页 is their job
    assert home.status_code == 200
    assert expected in home.get_data(as_text=True)


def test_supervisor_sees_both_villages_and_xlc_committee_only_its_own(client, auth):
    auth.login("supervisor")
    html = client.get("/home").get_data(as_text=True)
    assert "八里庙村" in html and "新立村" in html
    auth.logout()
    auth.login("committee_xlc")
    html = client.get("/home").get_data(as_text=True)
    assert "新立村" in html and "八里庙村" not in html


def test_wrong_password_is_refused_in_chinese_and_sets_no_session(client, auth):
    response = auth.login("committee", password="wrong-password")
    assert response.status_code == 401
    assert "手机号或密码不对" in response.get_data(as_text=True)
    assert client.get("/home").status_code == 302  # still logged out


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"phone": PHONES["committee"], "password": "demo-pass-2026"})
    assert response.status_code == 400
    assert client.get("/home").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                                    "https:evil.example", "\\\\evil.example", "//evil.example"])
def test_next_only_redirects_to_local_paths(client, auth, target):
    response = auth.login("committee", next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/home"


def test_next_to_a_local_page_is_followed(client, auth):
    response = auth.login("committee", next_url="/committee/review")
    assert response.headers["Location"] == "/committee/review"


def test_logout_needs_post_and_ends_the_session(client, auth):
    auth.login("resident")
    assert client.get("/logout").status_code == 405
    response = auth.logout()
    assert response.status_code == 302
    assert client.get("/home").status_code == 302


def test_pages_need_login_and_redirect_back(client):
    response = client.get("/committee/review")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]


def test_role_pages_are_closed_to_other_roles(client, auth):
    auth.login("resident")
    assert client.get("/committee/review").status_code == 403
    assert client.get("/committee/rules").status_code == 403
    assert client.get("/grid/sheet").status_code == 403


def test_language_switch_to_english_sticks(client, auth):
    client.get("/lang/en")
    html = client.get("/login").get_data(as_text=True)
    assert "Log in" in html and "登录" not in html.split("<main>")[1]
    auth.login("resident")
    assert "Our household's points" in client.get("/home").get_data(as_text=True)
    client.get("/lang/zh_CN")
    assert "我家的积分" in client.get("/home").get_data(as_text=True)


def test_session_cookie_is_httponly_and_lax(client, auth):
    response = auth.login("resident")
    cookie = next(value for key, value in response.headers.items() if key == "Set-Cookie" and "session=" in value)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_pages_forbid_framing_and_foreign_scripts(client):
    response = client.get("/login")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_page_is_a_readable_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "找不到这个页面" in response.get_data(as_text=True)


def test_password_change_invalidates_old_sessions(app, client, auth):
    from sqlalchemy import select

    from moralbank.database import write_transaction
    from moralbank.extensions import db
    from moralbank.people.models import User

    auth.login("resident")
    assert client.get("/home").status_code == 200
    with app.app_context():
        with write_transaction():
            user = db.session.scalar(select(User).where(User.phone == PHONES["resident"]))
            user.session_version += 1
        db.session.remove()
    assert client.get("/home").status_code == 302


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
