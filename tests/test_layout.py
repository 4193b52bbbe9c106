"""What a person sees around every page: error pages in their language with a way back, the 大字
setting that sticks (in the browser, and on the account), and words instead of internal codes in
the audit log and the exports."""
from __future__ import annotations

import csv
import io
import re

import pytest
from flask import abort
from openpyxl import load_workbook

from support import DEMO_PASSWORD, PHONES, csrf_from

WERKZEUG = re.compile(r"Not Found|Forbidden|Method Not Allowed|Bad Request|Too Many Requests|Internal Server Error"
                      r"|The requested URL|The method is not allowed|CSRF")
#: words of the English error pages (the Chinese ones are the source strings)
ENGLISH = {400: "Bad request", 403: "Not allowed", 404: "Page not found", 405: "This page cannot be opened this way",
           429: "Too many attempts", 500: "Server error"}
CHINESE = {400: "请求有误", 403: "没有权限", 404: "找不到这个页面", 405: "不能这样打开这个页面", 429: "操作太频繁",
           500: "服务器出错了"}


@pytest.fixture
def app_config(tmp_path):
    # Error pages are checked as a visitor sees them, not as the test client raises them.
    return {"UPLOAD_FOLDER": str(tmp_path / "uploads"), "PROPAGATE_EXCEPTIONS": False}


def add_failing_routes(app):
    """A page that is rate limited and one that fails, as no real page should (made before the
    app's first request)."""
    app.add_url_rule("/test-only/busy", "busy", lambda: abort(429))

    def crash():
        raise RuntimeError("boom")
    app.add_url_rule("/test-only/crash", "crash", crash)
    app.add_url_rule("/api/v1/test-only/crash", "api_crash", crash)


def login(client, who: str):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"phone": PHONES[who], "password": DEMO_PASSWORD, "csrf_token": token})
    assert response.status_code == 302


def error_pages(client) -> dict[int, tuple[int, str]]:
    """Each error status with the page a resident's browser gets for it."""
    answers = {
        400: client.post("/settings/text", data={"size": "large"}),  # no CSRF token: a stale page
        403: client.get("/committee/review"),
        404: client.get("/no-such-page"),
        405: client.get("/logout"),
        429: client.get("/test-only/busy"),
        500: client.get("/test-only/crash"),
    }
    return {status: (response.status_code, response.get_data(as_text=True)) for status, response in answers.items()}


@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_error_pages_speak_the_users_language_with_a_way_home(app, client, language):
    add_failing_routes(app)
    login(client, "resident")
    if language == "en":
        client.get("/lang/en")
    words = ENGLISH if language == "en" else CHINESE
    for status, (got, html) in error_pages(client).items():
        assert got == status, (status, got, html[:300])
        assert words[status] in html, (status, html[:600])
        assert not WERKZEUG.search(html), (status, re.findall(r"<h1>.*?</h1>|<p>.*?</p>", html))
        assert 'href="/"' in html and ("Home" if language == "en" else "首页") in html
        assert 'class="menu"' in html  # the menu stays: the rest of the site is one tap away


def test_error_page_links_back_to_the_page_before(app, client):
    login(client, "resident")
    html = client.get("/no-such-page", headers={"Referer": "http://localhost/me/history"}).get_data(as_text=True)
    assert 'href="/me/history"' in html and "返回" in html
    # never back to another site
    html = client.get("/no-such-page", headers={"Referer": "http://evil.example/x"}).get_data(as_text=True)
    assert "evil.example" not in html


def test_api_errors_keep_their_json_envelope(app, client):
    add_failing_routes(app)
    for url, status in (("/api/v1/no-such-thing", 404), ("/api/v1/test-only/crash", 500)):
        response = client.get(url)
        assert response.status_code == status and response.mimetype == "application/json"
        assert response.get_json()["error"]["code"]
    response = client.get("/no-such-page")
    assert response.mimetype == "text/html"


def test_405_keeps_allow_and_public_pages_link_to_login(app, client):
    response = client.get("/logout")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]
    html = client.get("/v/BLM").get_data(as_text=True)
    assert 'href="/login"' in html and "登录" in html


def large(html: str) -> bool:
    return bool(re.search(r'<html [^>]*class="large"', html))


def switch_text(client, size: str, next_url: str = "/v/BLM"):
    token = csrf_from(client.get(next_url).get_data(as_text=True))
    return client.post(f"/settings/text?next={next_url}", data={"size": size, "csrf_token": token})


def test_large_text_sticks_in_the_browser_without_an_account(app, client):
    assert not large(client.get("/v/BLM").get_data(as_text=True))
    response = switch_text(client, "large")
    assert response.status_code == 302 and response.headers["Location"].endswith("/v/BLM")
    cookie = client.get_cookie("text_size")
    assert cookie.value == "large" and cookie.max_age and cookie.max_age >= 300 * 24 * 3600
    html = client.get("/v/BLM").get_data(as_text=True)
    assert large(html) and 'aria-pressed="true"' in html
    assert large(client.get("/login").get_data(as_text=True))
    switch_text(client, "normal")
    assert not large(client.get("/v/BLM").get_data(as_text=True))


def test_large_text_sticks_on_the_account_on_another_phone(app, client):
    from sqlalchemy import text

    from moralbank.extensions import db
    login(client, "resident")
    switch_text(client, "large", "/home")
    assert large(client.get("/home").get_data(as_text=True))
    with app.app_context():
        assert db.session.scalar(text("SELECT text_size FROM users WHERE phone = :p"),
                                 {"p": PHONES["resident"]}) == "large"
    other_phone = app.test_client()
    assert not large(other_phone.get("/login").get_data(as_text=True))
    login(other_phone, "resident")
    assert large(other_phone.get("/home").get_data(as_text=True))
    # turned off there, it is off here too (the account's choice wins over this browser's cookie)
    switch_text(other_phone, "normal", "/home")
    assert not large(client.get("/home").get_data(as_text=True))


def test_a_text_size_that_is_not_offered_changes_nothing(app, client):
    response = switch_text(client, "huge")
    assert response.status_code == 422 and "字号" in response.get_data(as_text=True)
    assert client.get_cookie("text_size") is None


CODES = re.compile(r"\b(hygiene|custom|volunteer|elders|law|enterprise|award|deduction|issuance|sink|redemption|"
                   r"reversal|household_id|auth\.\w+|award\.\w+|rule\.\w+|user\.\w+|ledger\.\w+)\b")


def test_audit_log_shows_actions_in_words(app, client):
    login(client, "committee")
    html = client.get("/committee/audit").get_data(as_text=True)
    rows = re.search(r"<tbody>.*</tbody>", html, re.S).group(0)
    assert "登录" in rows and "新增积分项目" in rows
    shown = re.sub(r"<[^>]+>", " ", rows)
    assert not CODES.search(shown), CODES.findall(shown)[:10]
    options = re.findall(r"<option value=\"[^\"]*\"[^>]*>([^<]*)</option>", html)
    assert "积分审核（全部）" in options and not any(CODES.search(o) for o in options)
    # the filter still filters by the action's group
    filtered = client.get("/committee/audit?action=auth").get_data(as_text=True)
    assert "新增积分项目" not in re.search(r"<tbody>.*</tbody>", filtered, re.S).group(0)
    client.get("/lang/en")
    english = client.get("/committee/audit").get_data(as_text=True)
    assert "Log in" in english


def test_exports_use_the_words_people_read(app, client):
    login(client, "committee")
    awards = client.get("/exports/awards.csv?period=2026")
    rows = list(csv.reader(io.StringIO(awards.data.decode("utf-8-sig"))))
    categories = {row[4] for row in rows[1:]}
    assert categories and categories <= {"美丽庭院", "移风易俗", "志愿服务", "敬老爱幼", "律己守法", "创业致富", "扣分"}
    transfers = client.get("/exports/transfers.xlsx?period=2026")
    sheet = list(load_workbook(io.BytesIO(transfers.data), read_only=True).active.iter_rows(values_only=True))
    kinds = {row[2] for row in sheet[1:]}
    assert "记分" in kinds and kinds <= {"记分", "扣分", "兑换", "冲正", "积分过期", "结算", "调整"}
    holders = {row[4] for row in sheet[1:]} | {row[5] for row in sheet[1:]}
    assert not holders & {"issuance", "sink", "store", "household"}
    assert "村积分发放" in holders
    client.get("/lang/en")
    english = client.get("/exports/transfers.csv?period=2026").data.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(english)))
    assert header[:3] == ["No.", "Time", "Type"] and ",Record points," in english and ",award," not in english
