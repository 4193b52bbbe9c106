"""The inspection sheet on a phone (issue 12): photos are kept on the server as soon as they are
taken, with or without JavaScript, so a sheet sent back for one wrong row loses none of them; the
village decides per item whether it needs a photo; the demo's sheet opens on items without one."""
from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from moralbank.awards.models import Award, EvidencePhoto
from moralbank.awards.photos import photo_file
from test_awards_web import (awards_of, form_key, hamlet_id, head_of, ids_of, jpeg, login, new_award, new_rule,
                             page, sheet_form)
from support import csrf_from, session_of


def photo_paths(app, *rule_ids: int) -> dict[tuple[str, int], str | None]:
    from moralbank.people.models import Household
    with session_of(app) as session:
        return {(n, r): p for n, r, p in session.execute(
            select(Household.number, Award.rule_id, Award.photo_path)
            .join(Household, Household.id == Award.household_id).where(Award.rule_id.in_(rule_ids)))}


def kept_photos(app) -> int:
    with session_of(app) as session:
        return len(session.scalars(select(EvidencePhoto.id)).all())


@pytest.mark.clock("2026-12-01 10:00")
def test_photos_sent_with_a_refused_sheet_are_kept_and_filed_with_the_fixed_one(app, client, auth):
    """Without JavaScript: the photos come with the sheet, which a capped row refuses; the page comes
    back holding them, and the fixed sheet files every photo without taking it again."""
    yard = new_rule(app, "院内无积水", 4, category="hygiene", photo=True)
    capped = new_rule(app, "垃圾分类到位", 3, category="hygiene", cap=(1, "month"))
    new_award(app, "BLM-004", capped)
    h1 = hamlet_id(app, "BLM-01")
    a, b, c = ids_of(app, "BLM-002", "BLM-003", "BLM-004")
    login(auth, "grid")
    html = page(client, f"/grid/sheet?hamlet={h1}&rules={yard}&rules={capped}")
    data = sheet_form(html, h1, [yard, capped], [(a, yard), (b, yard), (c, capped)])
    data[f"photo-{a}"] = (io.BytesIO(jpeg()), "a.jpg")
    data[f"photo-{b}"] = (io.BytesIO(jpeg()), "b.jpg")
    refused = client.post("/grid/sheet", data=data, content_type="multipart/form-data")
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert awards_of(app, yard, capped) == [("BLM-004", capped, "proposed", "13800000002", False)]
    assert kept_photos(app) == 2, "both photos were stored although the sheet was not"
    held = dict(re.findall(r'name="photo_id-(\d+)" value="(\d*)"', html))
    assert held[str(a)] and held[str(b)] and held[str(c)] == ""
    assert html.count("照片已保存") >= 2 and "已拍的照片都保存着" in html
    assert client.get(f"/grid/photos/{held[str(a)]}").mimetype == "image/jpeg", "the thumbnail shows"

    # fixed: BLM-004's capped item unticked; no file is sent again, only what the page holds
    fixed = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "hamlet": str(h1),
             "rules": [str(yard), str(capped)], f"cell-{a}-{yard}": "1", f"cell-{b}-{yard}": "1",
             **{f"photo_id-{hid}": value for hid, value in held.items()}}
    filed = client.post("/grid/sheet", data=fixed)
    assert filed.status_code == 302, filed.get_data(as_text=True)[:600]
    paths = photo_paths(app, yard)
    assert paths[("BLM-002", yard)] and paths[("BLM-003", yard)] and paths[("BLM-002", yard)] != paths[("BLM-003", yard)]
    with app.app_context():
        assert photo_file(paths[("BLM-002", yard)]).is_file()


@pytest.mark.clock("2026-12-01 10:00")
def test_a_photo_uploaded_as_it_is_taken_is_held_by_id(app, client, auth, api):
    """With JavaScript: the camera's picture goes to /grid/photos at once; the id it answers is
    what the sheet carries; only the one who took it can use or see it."""
    yard = new_rule(app, "院内无积水", 4, category="hygiene", photo=True)
    h1 = hamlet_id(app, "BLM-01")
    (a,) = ids_of(app, "BLM-002")
    login(auth, "grid")
    html = page(client, f"/grid/sheet?hamlet={h1}&rules={yard}")
    token = csrf_from(html)
    kept = client.post("/grid/photos", data={"photo": (io.BytesIO(jpeg()), "a.jpg")},
                       headers={"X-CSRFToken": token}, content_type="multipart/form-data")
    assert kept.status_code == 201
    photo = kept.get_json()
    assert client.get(photo["thumb"]).status_code == 200

    bad = client.post("/grid/photos", data={"photo": (io.BytesIO(b"not a picture"), "a.jpg")},
                      headers={"X-CSRFToken": token}, content_type="multipart/form-data")
    assert bad.status_code == 422
    error = bad.get_json()["error"]
    assert error["code"] == "bad_photo" and "photo" in error["fields"] and "照片" in error["message"]
    missing = client.post("/grid/photos", data={}, headers={"X-CSRFToken": token})
    assert missing.status_code == 422 and missing.get_json()["error"]["fields"]["photo"]
    assert client.post("/grid/photos", data={"photo": (io.BytesIO(jpeg()), "a.jpg")},
                       content_type="multipart/form-data").status_code == 400, "no CSRF token, no photo"

    data = sheet_form(html, h1, [yard], [(a, yard)], **{f"photo_id-{a}": str(photo["id"])})
    assert client.post("/grid/sheet", data=data).status_code == 302
    assert photo_paths(app, yard)[("BLM-002", yard)]

    # someone else's photo id is refused next to the camera, and its thumbnail is not served
    auth.logout()
    login(auth, "committee")
    assert client.get(photo["thumb"]).status_code == 404
    html = page(client, f"/grid/sheet?hamlet={h1}&rules={yard}")
    (b,) = ids_of(app, "BLM-003")
    data = sheet_form(html, h1, [yard], [(b, yard)], **{f"photo_id-{b}": str(photo["id"])})
    refused = client.post("/grid/sheet", data=data)
    assert refused.status_code == 422
    assert re.search(rf'id="photo-{b}-error">照片：这张照片找不到了', refused.get_data(as_text=True))
    # residents and clerks keep no sheet photos
    auth.logout()
    login(auth, "resident")
    assert client.post("/grid/photos", data={"photo": (io.BytesIO(jpeg()), "a.jpg")},
                       headers={"X-CSRFToken": csrf_from(page(client, "/home"))},
                       content_type="multipart/form-data").status_code == 403


def test_the_demo_sheet_opens_on_items_with_and_without_a_photo(app, client, auth):
    login(auth, "grid")
    html = page(client, "/grid/sheet")
    card = html.split('class="card hh-card', 1)[1].split("</fieldset>", 1)[0]
    items = re.findall(r'<span class="toggle-points">(.*?)</span>\s*</label>', card, re.S)
    assert len(items) == 4
    assert any("需拍照" not in item for item in items) and any("需拍照" in item for item in items)
    assert 'capture="environment"' in card and 'accept="image/*"' in card
    assert "<table" not in html.split("sheet-form", 1)[1], "one card per household, not a wide table"


def test_needs_a_photo_is_the_villages_choice_on_the_rule_form_and_the_api(app, client, auth, api):
    created = api.post("/api/v1/villages/BLM/rules", "committee",
                       json={"category": "volunteer", "title": "清理河道", "points": 3, "photo_required": True})
    assert created.status_code == 201 and created.get_json()["photo_required"] is True
    login(auth, "committee")
    html = page(client, "/committee/rules")
    rule_id = created.get_json()["id"]
    key = form_key(html, f"-r{rule_id}")
    revised = client.post(f"/committee/rules/{rule_id}/revise",
                          data={"csrf_token": csrf_from(html), "idempotency_key": key, "category": "volunteer",
                                "title": "清理河道", "points": "3"})
    assert revised.status_code == 302
    rules = api.get("/api/v1/villages/BLM/rules", "committee").get_json()["items"]
    assert [r["photo_required"] for r in rules if r["title"] == "清理河道"] == [False]
