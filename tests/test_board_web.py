"""The public board and the pages around rankings: /v/<code> without login and masked,
the red list and its A4 print view, the notice print view, the resident's home, history and members,
the committee dashboard, the supervisor overview, exports, and the board in English."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser

from openpyxl import load_workbook
from sqlalchemy import text

from support import csrf_from
from test_rankings import (NEW_MONTH, PHONE_RE, SHANGHAI, area_id, balance, current_periods, expected_order, give,
                           household_id, masked, people_of, session_of, stars, this_month, thresholds, vetoed)

HOUSEHOLD_NUMBER = re.compile(r"\b(?:BLM|XLC)-\d{3}\b")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef\u3000-\u303f]")


# --- reading the pages -----------------------------------------------------------------------

class Page(HTMLParser):
    """The ranking lists (``ol.ranking``), texts by tag, and ``li`` blocks of ``ul.lines`` of a page."""

    TEXT_TAGS = ("h1", "h2", "label", "th", "button", "figcaption", "dt", "option", "title")

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.rankings: list[list[dict]] = []
        self.texts: dict[str, list[str]] = {tag: [] for tag in self.TEXT_TAGS}
        self._open: list[tuple[str, list[str]]] = []
        self._entry: dict | None = None
        self._field: str | None = None
        self._in_ranking = False
        self._select = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "select":
            self._select += 1
        if tag in self.TEXT_TAGS:
            self._open.append((tag, []))
        if tag == "ol" and "ranking" in classes:
            self.rankings.append([])
            self._in_ranking = True
        elif self._in_ranking and tag == "li" and "muted" not in classes:
            self._entry = {"rank": "", "who": "", "hamlet": "", "stars": "", "score": ""}
        elif self._entry is not None:
            if tag == "span" and classes and classes[0] in ("rank", "who", "stars"):
                self._field = classes[0]
            elif tag == "small":
                self._field = "hamlet"
            elif tag == "strong":
                self._field = "score"

    def handle_endtag(self, tag):
        if tag == "select":
            self._select -= 1
        if self._open and self._open[-1][0] == tag:
            name, parts = self._open.pop()
            self.texts[name].append(" ".join("".join(parts).split()))
        if tag == "ol" and self._in_ranking:
            self._in_ranking = False
        elif tag == "li" and self._entry is not None:
            entry = self._entry
            self.rankings[-1].append({"rank": int(entry["rank"]), "label": entry["who"].strip(),
                                      "hamlet": entry["hamlet"].strip(), "stars": entry["stars"].count("★"),
                                      "score": int(entry["score"])})
            self._entry = None
        elif tag in ("span", "small", "strong"):
            self._field = "who" if tag == "small" else None

    def handle_data(self, data):
        if self._entry is not None and self._field:
            self._entry[self._field] += data
        for name, parts in self._open:
            if name == "option" or not self._select:
                parts.append(data)


def lines_of(html: str) -> list[str]:
    """The ``<li>`` blocks of the first ``ul.lines`` list."""
    match = re.search(r'<ul class="lines">(.*?)</ul>', html, re.S)
    assert match, "no list of lines on the page"
    return re.findall(r"<li>(.*?)</li>", match.group(1), re.S)


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def get(client, url: str, status: int = 200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:300])
    return response.get_data(as_text=True)


def expected_lines(app, period: str, hamlet: str | None = None, *, red_list: bool = False) -> list[dict]:
    """The board's lines; a vetoed household (一票否决: the demo has one) has no stars, and the red
    list leaves it out."""
    heads, _names, _numbers = people_of(app, "BLM")
    limits = thresholds(app)
    no_stars = vetoed(app)
    order = [(hid, score) for hid, score in expected_order(app, "BLM", period, hamlet)
             if not (red_list and hid in no_stars)]
    return [{"rank": index + 1, "label": masked(heads[hid]), "score": score,
             "stars": 0 if hid in no_stars else stars(score, limits)} for index, (hid, score) in enumerate(order)]


def without_hamlet(entries: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key != "hamlet"} for entry in entries]


def assert_public(app, html: str) -> None:
    """Nothing personal on a public page: no full names, phone numbers or household numbers."""
    _heads, names, _numbers = people_of(app, "BLM")
    _xheads, xnames, _xnumbers = people_of(app, "XLC")
    shown = visible_text(html) + html
    assert not [name for name in names + xnames if name in shown]
    assert not PHONE_RE.search(shown), PHONE_RE.search(shown).group(0)
    assert not HOUSEHOLD_NUMBER.search(shown), HOUSEHOLD_NUMBER.search(shown).group(0)


# --- the public board ------------------------------------------------------------------------

@NEW_MONTH
def test_public_board_without_login_is_masked_and_filters_by_period_and_hamlet(app, client):
    month = this_month()
    html = get(client, "/v/BLM")  # no login
    page = Page(html)
    assert "八里庙村" in page.texts["h1"][0]
    board = page.rankings[0]
    assert without_hamlet(board) == expected_lines(app, month)
    assert len(board) > 20 and all("*" in line["label"] for line in board)
    assert_public(app, html)

    for period in current_periods().values():
        html = get(client, f"/v/BLM?period={period}")
        assert without_hamlet(Page(html).rankings[0]) == expected_lines(app, period)
        assert re.search(rf'<option value="{period}"\s+selected', html)
        assert_public(app, html)

    hamlet = area_id(app, "BLM-03")
    html = get(client, f"/v/BLM?period=all&hamlet={hamlet}")
    lines = Page(html).rankings[0]
    assert without_hamlet(lines) == expected_lines(app, "all", "BLM-03")
    assert {line["hamlet"] for line in lines} == {"东岗屯"}
    assert re.search(rf'<option value="{hamlet}"\s+selected', html)
    assert_public(app, html)

    # a period nobody scored in, a bad period, a hamlet of another village, an unknown village
    assert "这个期间还没有积分" in get(client, "/v/BLM?period=2019-01")
    for bad in ("/v/BLM?period=2026-13", f"/v/BLM?hamlet={area_id(app, 'XLC-01')}"):
        response = client.get(bad)
        assert response.status_code == 302 and response.headers["Location"].endswith("/v/BLM")
        assert 'class="flash error"' in get(client, "/v/BLM")
    get(client, "/v/NOPE", 404)
    # the lower-case code reaches the same board
    assert without_hamlet(Page(get(client, "/v/blm?period=all")).rankings[0]) == expected_lines(app, "all")


def test_red_list_after_publishing_and_its_a4_print_view(app, client, auth):
    month = this_month()
    html = get(client, "/v/BLM")
    assert "红榜" not in html and len(Page(html).rankings) == 1

    # the committee publishes from its dashboard
    auth.login("committee")
    dashboard = get(client, "/dashboard")
    form = {"csrf_token": csrf_from(dashboard), "idempotency_key": re.search(
        r'name="idempotency_key" value="([^"]+)"', dashboard).group(1), "village": "BLM", "period": month,
        "hamlet": "", "title": "十一月红榜", "confirm": "1"}
    response = client.post("/committee/rankings", data=form)
    assert response.status_code == 302
    location = response.headers["Location"]
    snapshot_id = int(re.search(r"/v/BLM/rankings/(\d+)$", location).group(1))
    again = client.post("/committee/rankings", data=form)  # a double tap publishes once
    assert again.status_code == 302 and again.headers["Location"] == location
    with session_of(app) as session:
        assert session.scalar(text("SELECT count(*) FROM ranking_snapshots")) == 1
    auth.logout()

    published = expected_lines(app, month, red_list=True)
    html = get(client, "/v/BLM")
    page = Page(html)
    assert "红榜" in html and "十一月红榜" in html
    assert len(page.rankings) == 2
    red = page.rankings[1]
    assert [{k: e[k] for k in ("rank", "label", "score")} for e in red] == [
        {k: e[k] for k in ("rank", "label", "score")} for e in published[:10]]
    assert f"/v/BLM/rankings/{snapshot_id}" in html
    assert_public(app, html)

    # a later award changes the live board, not the red list
    last_hid = expected_order(app, "BLM", month)[-1][0]
    number = next(n for n, h in numbers(app).items() if h == last_hid)
    give(app, number, "不要高价彩礼", quantity=5)
    page = Page(get(client, "/v/BLM"))
    assert page.rankings[0][0]["score"] > published[0]["score"]
    assert [e["score"] for e in page.rankings[1]] == [e["score"] for e in published[:10]]

    snapshot = get(client, f"/v/BLM/rankings/{snapshot_id}")
    assert without_hamlet(Page(snapshot).rankings[0]) == published
    assert f"/v/BLM/rankings/{snapshot_id}?print=1" in snapshot

    printed = get(client, f"/v/BLM/rankings/{snapshot_id}?print=1")
    assert 'class="sheet-a4"' in printed and "print.css" in printed
    assert "十一月红榜" in printed and "八里庙村" in printed
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td>(-?\d+)</td><td>(★*)</td></tr>",
                      printed)
    assert [(int(r), label, int(score), len(s)) for r, label, _hamlet, score, s in rows] == [
        (e["rank"], e["label"], e["score"], e["stars"]) for e in published]
    assert 'class="bar"' not in printed  # no site header on the sheet
    assert_public(app, printed)

    get(client, f"/v/XLC/rankings/{snapshot_id}", 404)
    get(client, "/v/BLM/rankings/999999", 404)


def numbers(app) -> dict[str, int]:
    with session_of(app) as session:
        return dict(session.execute(text("SELECT number, id FROM households")).all())


def test_only_the_committee_publishes_on_the_web(app, client, auth):
    for who in ("resident", "grid", "supervisor"):
        auth.login(who)
        home = get(client, "/v/BLM")  # any page of a logged-in user has the CSRF token (退出)
        response = client.post("/committee/rankings", data={
            "csrf_token": csrf_from(home), "idempotency_key": f"k-{who}", "village": "BLM", "period": "all"})
        assert response.status_code in (302, 403), response.status_code
        auth.logout()
    with session_of(app) as session:
        assert session.scalar(text("SELECT count(*) FROM ranking_snapshots")) == 0


def test_notice_board_print_view(app, client, api):
    assert "目前没有公示中的记录" in get(client, "/v/BLM/notices/print")
    target = household_id(app, "BLM-002")
    with session_of(app) as session:
        rule = session.scalar(text("SELECT r.id FROM rules r JOIN areas a ON a.id = r.village_id "
                                   "WHERE a.code = 'BLM' AND r.title = '冬季清雪出工'"))
        head = session.scalar(text("SELECT name FROM residents WHERE household_id = :h AND is_head"), {"h": target})
    award = api.post("/api/v1/awards", "grid", json={"household_id": target, "rule_id": rule}).get_json()
    approved = api.post(f"/api/v1/awards/{award['id']}/approve", "committee").get_json()
    assert approved["status"] == "approved"

    printed = get(client, "/v/BLM/notices/print")  # no login
    assert 'class="sheet-a4"' in printed
    row = re.search(r"<tbody><tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", printed)
    assert row and row.groups() == (masked(head), "八里庙屯", "冬季清雪出工", "+3")
    assert head not in printed
    assert_public(app, printed)
    assert "正在公示 1 条" in get(client, "/v/BLM")


# --- the resident ----------------------------------------------------------------------------

@NEW_MONTH
def test_resident_home_shows_balance_month_score_rank_stars_and_chart(app, client, auth):
    own = household_id(app, "BLM-001")
    month = this_month()
    auth.login("resident")

    def check(html):
        order = expected_order(app, "BLM", month)
        rank = 1 + [hid for hid, _score in order].index(own)
        month_score = dict(order)[own]
        all_score = dict(expected_order(app, "BLM", "all"))[own]
        assert re.search(rf'data-testid="balance">{balance(app, own)}<', html)
        assert re.search(rf'data-testid="month-score">{month_score}<', html)
        assert re.search(rf'data-testid="rank">第 {rank} 名 / {len(order)} 户<', html)
        limits = thresholds(app)
        shown = re.search(r'<p class="stars"[^>]*>([★☆]+)</p>', html).group(1)
        assert shown.count("★") == stars(all_score, limits) and len(shown) == len(limits)
        chart = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S).group(0)
        bars = [int(v) for v in re.findall(r"<rect [^>]*><title>(-?\d+)</title></rect>", chart)]
        assert len(bars) == 12 and bars[-1] == month_score
        return rank

    rank = check(get(client, "/home"))
    assert rank > 1
    give(app, "BLM-001", "不要高价彩礼", quantity=5)  # +150: first of the village this month
    assert check(get(client, "/home")) == 1


def test_history_pages_back_twenty_lines_at_a_time_with_rule_titles(app, client, auth):
    titles = ["参加志愿服务（半天）", "冬季清雪出工", "照顾孤寡老人"]
    transfers = [give(app, "BLM-001", titles[i % 3]) for i in range(45)]
    with session_of(app) as session:
        award_of = dict(session.execute(text("SELECT id, award_id FROM transfers WHERE id IN (%s)"
                                             % ",".join(map(str, transfers)))).all())
    newest_first = list(reversed(transfers))
    auth.login("resident")

    def page(url):
        html = get(client, url)
        lines = lines_of(html)
        cursor = re.search(r'href="/me/history\?before=(\d+)"', html)
        return html, lines, cursor.group(1) if cursor else None

    html, first, cursor = page("/me/history")
    assert len(first) == 20 and cursor
    _html, second, cursor2 = page(f"/me/history?before={cursor}")
    assert len(second) == 20 and cursor2
    for lines, chunk in ((first, newest_first[:20]), (second, newest_first[20:40])):
        shown = [int(re.search(r"/awards/(\d+)", line).group(1)) for line in lines]
        assert shown == [award_of[t] for t in chunk]
        for line, transfer_id in zip(lines, chunk):
            assert titles[transfers.index(transfer_id) % 3] in line and "+" in line
    _html, third, _cursor3 = page(f"/me/history?before={cursor2}")
    assert third and len(third) <= 20
    third_ids = {int(m) for line in third for m in re.findall(r"/awards/(\d+)", line)}
    assert {award_of[t] for t in newest_first[40:]} <= third_ids
    assert not third_ids & {award_of[t] for t in newest_first[:40]}
    assert f">{balance(app, household_id(app, 'BLM-001'))}<" in html


def test_members_page_lists_the_household(app, client, auth):
    own = household_id(app, "BLM-001")
    with session_of(app) as session:
        members = list(session.scalars(text("SELECT name FROM residents WHERE household_id = :h"), {"h": own}))
        others = list(session.scalars(text("SELECT name FROM residents WHERE household_id = :h"),
                                      {"h": household_id(app, "BLM-002")}))
    assert len(members) >= 2
    auth.login("resident")
    html = get(client, "/me/household")
    assert all(name in html for name in members)
    assert not any(name in html for name in others)
    assert "户主" in html and "BLM-001" in html
    auth.logout()
    auth.login("supervisor")  # no household of their own
    get(client, "/me/household", 403)
    get(client, "/me/history", 403)


# --- committee and supervisor ----------------------------------------------------------------

def charts_of(html: str) -> dict[str, list[int]]:
    figures = re.findall(r"<figure><figcaption>([^<]+)</figcaption>\s*<svg.*?</svg>", html, re.S)
    bodies = re.findall(r"<figure><figcaption>[^<]+</figcaption>\s*(<svg.*?</svg>)", html, re.S)
    return {name: [int(v) for v in re.findall(r"<title>(-?\d+)</title>", body)] for name, body in zip(figures, bodies)}


@NEW_MONTH
def test_committee_dashboard_shows_participation_and_category_charts(app, client, auth):
    month = this_month()
    auth.login("committee")
    html = get(client, "/dashboard")
    active = len(expected_order(app, "BLM", month))
    assert re.search(rf'data-testid="participation">{active} / 60（{round(active * 100 / 60)}%）<', html)
    charts = charts_of(html)
    assert {"美丽庭院", "志愿服务", "扣分"} <= set(charts)
    assert all(len(values) == 6 for values in charts.values())
    assert html.count('<svg class="chart"') == len(charts)
    assert 'action="/committee/rankings"' in html

    quiet = next(n for n, h in numbers(app).items()
                 if n.startswith("BLM") and h not in dict(expected_order(app, "BLM", month)))
    give(app, quiet, "庭院整洁、物品摆放有序")   # +5 hygiene, a new household this month
    give(app, "BLM-005", "乱堆乱放")            # −5 deduction
    after_html = get(client, "/dashboard")
    after = charts_of(after_html)
    assert after["美丽庭院"][-1] == charts["美丽庭院"][-1] + 5
    assert after["扣分"][-1] == charts["扣分"][-1] - 5
    assert after["美丽庭院"][:-1] == charts["美丽庭院"][:-1]
    assert re.search(rf'data-testid="participation">{active + 1} / 60', after_html)

    get(client, "/dashboard?village=XLC", 404)
    assert 'class="flash error"' in get(client, "/dashboard?month=2026-13")  # a clear message, not a 500
    auth.logout()

    auth.login("supervisor")
    html = get(client, "/dashboard?village=XLC")
    assert "新立村" in html and 'action="/committee/rankings"' not in html
    assert re.search(rf'data-testid="participation">{len(expected_order(app, "XLC", month))} / 20', html)
    auth.logout()

    for who in ("resident", "grid", "clerk"):
        auth.login(who)
        get(client, "/dashboard", 403)
        auth.logout()


def test_supervisor_overview_shows_both_villages(app, client, auth):
    month = this_month()
    auth.login("supervisor")
    html = get(client, "/overview")
    rows = re.findall(r'<tr><td><a href="[^"]*village=(\w+)">([^<]+)</a></td><td class="num">(\d+)</td>\s*'
                      r'<td class="num">(\d+)%</td><td class="num">(-?\d+)</td>', html)
    assert {(code, name, int(count)) for code, name, count, _p, _s in rows} == {
        ("BLM", "八里庙村", 60), ("XLC", "新立村", 20)}
    for code, _name, count, _pct, points in rows:
        assert int(points) == sum(score for _h, score in expected_order(app, code, month))
    auth.logout()
    auth.login("committee")
    html = get(client, "/overview")
    assert "八里庙村" in html and "新立村" not in html
    auth.logout()
    auth.login("resident")
    get(client, "/overview", 403)


# --- exports ---------------------------------------------------------------------------------

def month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = int(month[:4]), int(month[5:])
    start = datetime(year, number, 1, tzinfo=SHANGHAI)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def utc_naive(moment: datetime):
    from datetime import timezone
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def test_exports_download_and_parse(app, client, auth):
    month = this_month()
    transfer_id = give(app, "BLM-007", "义务献血")
    with session_of(app) as session:
        head = session.scalar(text("SELECT name FROM residents WHERE household_id = :h AND is_head"),
                              {"h": household_id(app, "BLM-007")})
        start, end = (utc_naive(m) for m in month_bounds(month))
        vid = area_id(app, "BLM")
        award_count = session.scalar(text("SELECT count(*) FROM awards WHERE village_id = :v AND proposed_at >= :s "
                                          "AND proposed_at < :e"), {"v": vid, "s": start, "e": end})
        transfer_count = session.scalar(text("SELECT count(*) FROM transfers WHERE village_id = :v AND "
                                             "created_at >= :s AND created_at < :e"), {"v": vid, "s": start, "e": end})
        award_id = session.scalar(text("SELECT award_id FROM transfers WHERE id = :t"), {"t": transfer_id})
    auth.login("committee")

    response = client.get("/exports/rankings.xlsx?period=all")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(load_workbook(io.BytesIO(response.data), read_only=True).active.iter_rows(values_only=True))
    assert list(rows[0]) == ["名次", "户", "屯/组", "得分", "星级"]
    assert [(r[0], r[1], r[3], r[4]) for r in rows[1:]] == [
        (e["rank"], e["label"], e["score"], e["stars"]) for e in expected_lines(app, "all")]
    assert not HOUSEHOLD_NUMBER.search(str(rows))

    response = client.get("/exports/awards.csv")  # this month by default
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["编号", "户号", "户主"]
    # before 02:00 on the 1st every award of this month was proposed last month (checked below)
    assert len(rows) - 1 == award_count
    # an award is listed in the month it was proposed in (record_award proposes two hours before posting)
    proposed_month = (datetime.now(SHANGHAI) - timedelta(hours=2)).strftime("%Y-%m")
    if proposed_month != month:
        rows = list(csv.reader(io.StringIO(client.get(f"/exports/awards.csv?period={proposed_month}")
                                           .data.decode("utf-8-sig"))))
    mine = next(row for row in rows[1:] if row[0] == str(award_id))
    assert mine[1:4] == ["BLM-007", head, "义务献血"] and mine[6] == "20" and mine[7] == "已入账"

    response = client.get(f"/exports/transfers.xlsx?period={month}")
    assert response.status_code == 200
    rows = list(load_workbook(io.BytesIO(response.data), read_only=True).active.iter_rows(values_only=True))
    assert len(rows) - 1 == transfer_count
    mine = next(row for row in rows[1:] if row[0] == transfer_id)
    assert (mine[2], mine[3], mine[5], mine[6]) == ("记分", 20, "BLM-007", "义务献血")
    assert all(row[0] for row in rows[1:])

    # bad period: a message, not a 500; another village: not this committee's
    response = client.get("/exports/awards.csv?period=2026-13")
    assert response.status_code == 302
    get(client, "/exports/rankings.xlsx?village=XLC", 404)
    get(client, "/exports/rankings.pdf", 404)
    auth.logout()

    auth.login("supervisor")
    response = client.get("/exports/rankings.csv?village=XLC&period=all")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert len(rows) - 1 == len(expected_order(app, "XLC", "all"))
    auth.logout()

    auth.login("resident")
    for url in ("/exports/rankings.xlsx", "/exports/awards.csv", "/exports/transfers.xlsx", "/dashboard"):
        get(client, url, 403)
    auth.logout()
    assert client.get("/exports/awards.csv").status_code == 302  # to the login page


# --- English ---------------------------------------------------------------------------------

def test_board_in_english(app, client):
    data_names = {"八里庙村", "八里庙屯", "前进屯", "东岗屯", "西沟屯"}

    def ui_texts(html):
        page = Page(html)
        texts = [t for tag in ("h1", "h2", "label", "button", "option", "title") for t in page.texts[tag]]
        cleaned = []
        for value in texts:
            for name in data_names:
                value = value.replace(name, "")
            cleaned.append(value)
        return cleaned

    html = get(client, "/v/BLM?lang=en")
    assert '<html lang="en">' in html
    leftover = [t for t in ui_texts(html) if CJK.search(t)]
    assert not leftover, leftover
    assert any(t.strip() for t in Page(html).texts["h1"])
    # the choice sticks, and /lang/en does the same
    assert not [t for t in ui_texts(get(client, "/v/BLM?period=all")) if CJK.search(t)]
    other = client.application.test_client()
    assert other.get("/lang/en?next=/v/BLM").status_code == 302
    html = other.get("/v/BLM").get_data(as_text=True)
    assert not [t for t in ui_texts(html) if CJK.search(t)]
    assert "积分榜" in get(client, "/v/BLM?lang=zh_CN")
