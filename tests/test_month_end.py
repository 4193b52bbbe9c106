"""The committee's month end on the web (issue 12): a period picker on every period view (the
board and its print view, the dashboard, the overview, the exports, the statement, publishing),
a second look on the server before publishing, settling, reversing and revoking a card, each
role's landing, and the committee's to-do with its counts.

The clock is pinned five minutes into December: November has just ended, so the pages must
offer it (publishing first of all) and show its figures when it is picked."""
from __future__ import annotations

import html as htmllib
import re
import uuid

import pytest
from sqlalchemy import select, text

from support import csrf_from, session_of

pytestmark = pytest.mark.clock("2026-12-01 00:05")

LAST = "2026-11"


# --- reading the pages -----------------------------------------------------------------------

def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:300])
    return response.get_data(as_text=True)


def picker(html: str, select_id: str = "period") -> tuple[list[str], str | None]:
    """The options of a period picker (``<select id=…>``) in order, and the one selected (the
    browser's choice: the marked one, else the first)."""
    match = re.search(rf'<select id="{select_id}"[^>]*data-testid="period-picker">(.*?)</select>', html, re.S)
    assert match, f"no period picker #{select_id}"
    options = re.findall(r'<option value="([^"]+)"( selected)?>', match.group(1))
    values = [value for value, _sel in options]
    chosen = next((value for value, sel in options if sel), values[0] if values else None)
    return values, chosen


def hidden_fields(html: str, marker: str = 'data-testid="confirm"') -> dict[str, list[str]]:
    """The fields of the form holding ``marker`` (the confirmation page's 确认 button)."""
    form = next(f for f in re.findall(r"<form.*?</form>", html, re.S) if marker in f)
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        fields.setdefault(name, []).append(htmllib.unescape(value))
    return fields


def form_action(html: str, marker: str = 'data-testid="confirm"') -> str:
    form = next(f for f in re.findall(r"<form.*?</form>", html, re.S) if marker in f)
    return htmllib.unescape(re.search(r'action="([^"]+)"', form).group(1))


def key_of(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def scalar(app, sql: str, **params):
    with session_of(app) as session:
        return session.execute(text(sql), params).scalar()


def login(app, who: str):
    from support import DEMO_PASSWORD, PHONES
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"phone": PHONES[who], "password": DEMO_PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def store_of_clerk(api) -> int:
    return api.get("/api/v1/me", "clerk").get_json()["store"]["id"]


# --- the picker on every period view ---------------------------------------------------------

PAST_MONTHS = [f"2026-{m:02d}" for m in range(12, 0, -1)]


def test_every_period_view_has_the_picker_with_past_months_quarters_and_years(app, api):
    store = store_of_clerk(api)
    committee, supervisor = login(app, "committee"), login(app, "supervisor")
    anonymous = app.test_client()
    views = {"/v/BLM": anonymous, "/v/BLM?print=1": anonymous, "/dashboard": committee,
             "/overview": supervisor, f"/stores/{store}/statement": committee}
    for url, client in views.items():
        values, chosen = picker(page(client, url))
        assert values[:12] == PAST_MONTHS, (url, values)
        assert chosen == "2026-12", url  # the page shows this month unless asked
        if "statement" in url:
            assert values == PAST_MONTHS  # settled by month only
        else:
            assert {"2026-Q4", "2026-Q3", "2026-Q2", "2026-Q1", "2026", "2025", "2024"} <= set(values), url
    # the picker is a GET form: what it sends is the page's own URL with ?period=
    html = page(committee, "/dashboard")
    form = re.search(r'<form method="get" class="period-picker[^>]*>(.*?)</form>', html, re.S).group(1)
    assert 'name="village" value="BLM"' in form and 'name="period"' in form


def test_picking_last_month_on_the_first_shows_last_months_figures(app, api):
    ranking = api.get("/api/v1/rankings?village=BLM&period=2026-11&limit=100", "committee").get_json()["items"]
    assert ranking, "the demo has scores in November"
    anonymous = app.test_client()
    # this month has just begun; the board links to last month
    now = page(anonymous, "/v/BLM")
    link = re.search(r'href="([^"]+)" data-testid="last-month"', now).group(1)
    assert htmllib.unescape(link) == "/v/BLM?period=2026-11"
    november = page(anonymous, "/v/BLM?period=2026-11")
    assert picker(november)[1] == LAST and "2026年11月" in november
    first = ranking[0]
    assert f'{first["label"]}<small>{first["hamlet"]}</small>' in november
    assert november.count('<span class="rank">') == len(ranking)
    printed = page(anonymous, "/v/BLM?period=2026-11&print=1")
    assert picker(printed)[1] == LAST and first["label"] in printed and "2026年11月" in printed

    committee = login(app, "committee")
    dashboard = api.get("/api/v1/villages/BLM/dashboard?month=2026-11", "committee").get_json()
    for url in ("/dashboard?period=2026-11", "/dashboard?month=2026-11"):  # the older links still work
        html = page(committee, url)
        assert picker(html)[1] == LAST
        assert f'{dashboard["active"]} / {dashboard["households"]}' in html
        assert "/exports/rankings.csv?village=BLM&amp;period=2026-11" in html
    csv = committee.get("/exports/rankings.csv?village=BLM&period=2026-11")
    assert csv.status_code == 200 and str(first["score"]) in csv.get_data(as_text=True)
    quarter = page(committee, "/dashboard?period=2026-Q4")  # a quarter works too
    assert picker(quarter)[1] == "2026-Q4" and "2026年第4季度" in quarter

    overview = page(login(app, "supervisor"), "/overview?period=2026-11")
    assert picker(overview)[1] == LAST
    points = scalar(app, "SELECT coalesce(sum(s.score), 0) FROM household_scores s JOIN areas a ON a.id = "
                         "s.village_id WHERE a.code = 'BLM' AND s.period = '2026-11'")
    assert f'<td class="num">{points}</td>' in overview


def test_an_older_period_typed_in_the_url_is_shown_and_kept_by_the_picker(app):
    html = page(app.test_client(), "/v/BLM?period=2024-03")
    values, chosen = picker(html)
    assert chosen == "2024-03" and "2024-03" in values


def test_publishing_offers_the_month_just_ended_first(app):
    html = page(login(app, "committee"), "/dashboard")
    values, chosen = picker(html, "publish-period")
    assert values[0] == LAST and chosen == LAST
    assert values[:12] == PAST_MONTHS[1:] + ["2025-12"]  # twelve finished months, newest first
    open_group = re.search(r'<optgroup label="未结束">(.*?)</optgroup>', html, re.S).group(1)
    assert 'value="2026-Q4"' in open_group and 'value="2026-12"' in open_group
    assert values.index("2026-Q4") > values.index("2026-Q3")


# --- a second look before what cannot be undone -------------------------------------------------

def snapshots(app) -> int:
    return scalar(app, "SELECT count(*) FROM ranking_snapshots")


def test_publishing_asks_first_and_publishes_on_confirm(app, api):
    committee = login(app, "committee")
    html = page(committee, "/dashboard")
    form = {"csrf_token": csrf_from(html), "idempotency_key": key_of(html), "village": "BLM",
            "period": LAST, "hamlet": "", "title": ""}
    ranked = len(api.get("/api/v1/rankings?village=BLM&period=2026-11&limit=500", "committee").get_json()["items"])
    preview = committee.post("/committee/rankings", data=form)
    assert preview.status_code == 200 and snapshots(app) == 0
    text_ = preview.get_data(as_text=True)
    assert f"发布 2026年11月 红榜（全村）" in text_ and f"共 {ranked} 户上榜" in text_ and "第 1 名" in text_
    fields = hidden_fields(text_)
    assert fields["idempotency_key"] == [form["idempotency_key"]] and fields["period"] == [LAST]
    assert fields["csrf_token"] == [form["csrf_token"]]
    done = committee.post(form_action(text_), data=dict(fields, confirm="1"))
    assert done.status_code == 302 and "/v/BLM/rankings/" in done.headers["Location"]
    assert snapshots(app) == 1
    # an empty period is refused at the first step, with nothing to confirm
    empty = committee.post("/committee/rankings", data=dict(form, period="2024-01", idempotency_key="k2"))
    assert empty.status_code == 422 and 'data-testid="confirm"' not in empty.get_data(as_text=True)
    assert snapshots(app) == 1


def test_settling_asks_first_and_settles_on_confirm(app, api):
    store = store_of_clerk(api)
    owed = api.get(f"/api/v1/stores/{store}/statement?period={LAST}", "committee").get_json()
    assert owed["points"] > 0
    committee = login(app, "committee")
    html = page(committee, f"/stores/{store}/statement?period={LAST}")
    settle_form = re.search(r'<form method="post" class="no-print">(.*?)</form>', html, re.S).group(1)
    form = {"csrf_token": csrf_from(html), "idempotency_key": key_of(settle_form), "period": LAST}
    preview = committee.post(f"/stores/{store}/statement", data=form)
    text_ = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'data-testid="confirm"' in text_
    count = sum(1 for r in owed["redemptions"] if not r.get("reversed"))
    name = api.get("/api/v1/me", "clerk").get_json()["store"]["name"]
    assert f"与 {name} 结算 2026年11月：{count} 笔兑换，共 {owed['points']} 分" in text_
    assert scalar(app, "SELECT count(*) FROM settlements WHERE store_id = :s", s=store) == 0
    done = committee.post(form_action(text_), data=dict(hidden_fields(text_), confirm="1"), follow_redirects=True)
    assert "已结算" in done.get_data(as_text=True)
    assert scalar(app, "SELECT points FROM settlements WHERE store_id = :s AND period = :p", s=store, p=LAST) \
        == owed["points"]
    # this month is not over: the page offers no settling, and a posted form is refused at once
    open_month = committee.post(f"/stores/{store}/statement", data=dict(form, period="2026-12", idempotency_key="k3"))
    assert 'data-testid="confirm"' not in open_month.get_data(as_text=True)


def test_reversing_a_redemption_asks_first_and_reverses_on_confirm(app, api):
    store = store_of_clerk(api)
    committee = login(app, "committee")
    html = page(committee, f"/stores/{store}/statement?period={LAST}")
    # the statement offers a reversal per purchase of a month not yet settled
    transfer = int(re.search(r'action="/transfers/(\d+)/reverse"', html).group(1))
    form = {"csrf_token": csrf_from(html), "idempotency_key": uuid.uuid4().hex, "reason": "退货",
            "back": f"/stores/{store}/statement?period={LAST}"}
    preview = committee.post(f"/transfers/{transfer}/reverse", data=form)
    text_ = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "冲正兑换" in text_ and "退回" in text_ and "退货" in text_
    reversed_ = "SELECT count(*) FROM transfers WHERE reverses_id = :t"
    assert scalar(app, reversed_, t=transfer) == 0
    done = committee.post(form_action(text_), data=dict(hidden_fields(text_), confirm="1"))
    assert done.status_code == 302 and scalar(app, reversed_, t=transfer) == 1


def test_reversing_an_award_asks_first(app):
    with session_of(app) as session:
        transfer, award = session.execute(text(
            "SELECT id, award_id FROM transfers WHERE code = 'award' AND village_id = (SELECT id FROM areas "
            "WHERE code = 'BLM') ORDER BY id DESC LIMIT 1")).one()
    committee = login(app, "committee")
    html = page(committee, f"/awards/{award}")
    form = {"csrf_token": csrf_from(html), "idempotency_key": key_of(html), "reason": "记错了户",
            "back": f"/awards/{award}"}
    preview = committee.post(f"/transfers/{transfer}/reverse", data=form)
    assert preview.status_code == 200 and "冲正「" in preview.get_data(as_text=True)
    assert scalar(app, "SELECT count(*) FROM transfers WHERE reverses_id = :t", t=transfer) == 0
    # other villages' committees cannot even see what it would do
    other = login(app, "committee_xlc")
    token = csrf_from(page(other, "/home"))
    assert other.post(f"/transfers/{transfer}/reverse", data=dict(form, csrf_token=token)).status_code == 403


def test_revoking_a_card_asks_first(app, api):
    household = api.get("/api/v1/me", "resident").get_json()["household"]["id"]
    committee = login(app, "committee")
    html = page(committee, f"/committee/households/{household}/card")
    committee.post(f"/committee/households/{household}/card", data={"csrf_token": csrf_from(html), "pin": "5173"})
    active = "SELECT count(*) FROM household_cards WHERE household_id = :h AND revoked_at IS NULL"
    assert scalar(app, active, h=household) == 1
    preview = committee.post(f"/committee/households/{household}/card/revoke", data={"csrf_token": csrf_from(html)})
    text_ = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "1 张积分卡" in text_ and scalar(app, active, h=household) == 1
    done = committee.post(form_action(text_), data=dict(hidden_fields(text_), confirm="1"), follow_redirects=True)
    assert "已停用 1 张卡" in done.get_data(as_text=True) and scalar(app, active, h=household) == 0


# --- landings and the committee's to-do --------------------------------------------------------

def test_each_role_lands_on_its_job(app):
    expected = {"clerk": "/shop", "grid": "/grid/sheet"}
    for who, target in expected.items():
        client = login(app, who)
        response = client.get("/home")
        assert response.status_code == 302 and response.headers["Location"] == target, who
        assert client.get(target).status_code == 200
    committee = page(login(app, "committee"), "/home")
    assert 'data-testid="todo"' in committee
    resident = page(login(app, "resident"), "/home")
    assert 'data-testid="balance"' in resident and 'data-testid="todo"' not in resident
    supervisor = page(login(app, "supervisor"), "/home")
    assert "八里庙村" in supervisor and "新立村" in supervisor and 'data-testid="todo"' not in supervisor


def test_the_household_list_links_to_the_paper_card_and_the_board_to_login(app):
    home = page(login(app, "committee"), "/home")
    assert re.search(r'href="/committee/households/\d+/card"', home)
    board = page(app.test_client(), "/v/BLM")
    assert 'href="/login" data-testid="login-link"' in board
    assert 'data-testid="login-link"' not in page(login(app, "resident"), "/v/BLM")


def propose_one(api) -> dict:
    """A new award proposed by the grid manager (the first rule and household the caps allow)."""
    rules = [r for r in api.get("/api/v1/villages/BLM/rules", "grid").get_json()["items"]
             if r["points"] > 0 and not r["photo_required"]]
    households = api.get("/api/v1/villages/BLM/households", "grid").get_json()["items"]
    for rule in rules:
        for household in households[:5]:
            answer = api.post("/api/v1/awards", "grid", json={"household_id": household["id"], "rule_id": rule["id"]})
            if answer.status_code == 201:
                return answer.get_json()
    raise AssertionError("no award could be proposed")


def todo_counts(html: str) -> dict[str, int]:
    return {key: int(count) for key, count in re.findall(
        r'data-testid="todo-(\w+)".*?data-count="(\d+)"', html, re.S)}


def test_the_committee_to_do_counts_what_waits(app, api):
    committee = login(app, "committee")
    counts = todo_counts(page(committee, "/home"))
    village = "(SELECT id FROM areas WHERE code = 'BLM')"
    assert counts["proposed"] == scalar(app, f"SELECT count(*) FROM awards WHERE status = 'proposed' "
                                             f"AND village_id = {village}")
    assert counts["disputed"] == scalar(app, f"SELECT count(*) FROM awards WHERE status = 'disputed' "
                                             f"AND village_id = {village}")
    assert counts["unpublished"] == 1  # November's 红榜 is not out yet
    store = store_of_clerk(api)
    assert counts["unsettled"] >= 1
    html = page(committee, "/home")
    assert f'href="/stores/{store}/statement?period={LAST}"' in html
    assert 'href="/dashboard?village=BLM&amp;publish=2026-11#publish"' in html

    # a proposal more; then November is published and settled with the store
    proposed = propose_one(api)
    assert todo_counts(page(committee, "/home"))["proposed"] == counts["proposed"] + (proposed["status"] == "proposed")
    assert api.post("/api/v1/villages/BLM/ranking-snapshots", "committee",
                    json={"period": LAST}).status_code == 201
    assert api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": LAST}).status_code == 201
    after = todo_counts(page(committee, "/home"))
    assert after["unpublished"] == 0 and after["unsettled"] < counts["unsettled"]
    assert f'href="/stores/{store}/statement?period={LAST}"' not in page(committee, "/home")


def test_notices_ending_today_or_tomorrow_are_counted(app, api):
    from datetime import timedelta
    from moralbank.awards.models import Award
    from moralbank.database import utcnow
    committee = login(app, "committee")
    before = todo_counts(page(committee, "/home"))["ending"]
    soon, later = propose_one(api), propose_one(api)
    with session_of(app) as session:
        for award_id, ends in ((soon["id"], timedelta(hours=30)), (later["id"], timedelta(days=3))):
            award = session.get(Award, award_id)
            award.status, award.notice_ends_at = "approved", utcnow() + ends
        session.commit()
    assert todo_counts(page(committee, "/home"))["ending"] == before + 1
