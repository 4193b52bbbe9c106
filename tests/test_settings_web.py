"""The committee's settings page (/committee/settings): the same service as the API's PATCH."""
from __future__ import annotations

from support import csrf_from, session_of


def _settings(app) -> dict:
    from moralbank.people.service import village_by_code
    from moralbank.people.villages import settings_of

    with session_of(app):
        return settings_of(village_by_code("BLM"))


def test_the_committee_changes_a_setting_from_its_page(app, client, auth):
    auth.login("committee")
    home = client.get("/home").get_data(as_text=True)
    assert 'href="/committee/settings"' in home  # in the committee's menu
    html = client.get("/committee/settings").get_data(as_text=True)
    before = _settings(app)
    assert f'value="{before["notice_days"]}"' in html
    form = {"csrf_token": csrf_from(html), "notice_days": "3", "code_ttl_seconds": str(before["code_ttl_seconds"]),
            "approval_threshold": "25", "star_thresholds": "10，20, 40 80 160"}
    response = client.post("/committee/settings", data=form, follow_redirects=True)
    assert response.status_code == 200 and "设置已保存" in response.get_data(as_text=True)
    after = _settings(app)
    assert (after["notice_days"], after["approval_threshold"], after["star_thresholds"]) == (3, 25, [10, 20, 40, 80, 160])
    assert after["code_ttl_seconds"] == before["code_ttl_seconds"]


def test_a_bad_value_changes_nothing_and_names_the_field(app, client, auth):
    auth.login("committee")
    html = client.get("/committee/settings").get_data(as_text=True)
    before = _settings(app)
    form = {"csrf_token": csrf_from(html), "notice_days": "99", "code_ttl_seconds": "120",
            "approval_threshold": "25", "star_thresholds": "50 100 200 400 800"}
    response = client.post("/committee/settings", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "公示天数：应为 0 到 30 的整数" in page  # the field as the page labels it, and the range
    assert 'value="99"' in page and 'value="120"' in page  # what was typed is kept
    assert "notice_days" not in page.split("<form", 1)[0]  # no internal name in the message
    assert _settings(app) == before  # the valid changes in the same form are not applied either

    words = dict(form, notice_days="3", star_thresholds="50 一百")
    response = client.post("/committee/settings", data=words)
    assert response.status_code == 422 and "星级分数线" in response.get_data(as_text=True)
    assert _settings(app) == before


def test_only_the_committee_opens_the_settings(client, auth):
    auth.login("grid")
    assert client.get("/committee/settings").status_code == 403
