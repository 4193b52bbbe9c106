"""Offline vouchers on the web (routes of the ``shop`` blueprint): the resident's vouchers and their
QR, the clerk's offline page (its service worker, the data it keeps, its sync), and the
committee's sheet of vouchers for a paper-card household and its list of conflicts."""
from __future__ import annotations

import io
from pathlib import Path

from flask import (current_app, flash, jsonify, redirect, render_template, request, send_file, url_for)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from marshmallow import ValidationError
from sqlalchemy import select

from .. import throttle
from ..api.offline import SalesRequestSchema
from ..database import utcnow, write_transaction
from ..errors import DomainError, Invalid
from ..extensions import db
from ..idempotency import request_body, run_once
from ..people import access
from ..people.models import Household
from ..stores import offline, offline_keys
from ..stores import service as stores
from ..stores.models import Item, Store
from ..stores.qr import qr_png
from .forms import committee_village, form_int, new_form_key, resident_household, submit_once
from .shop import _my_store, bp

STATIC = Path(__file__).resolve().parent.parent.parent / "static"


def _voucher_view(voucher) -> dict:
    return {"v": voucher, "pretty": f"{voucher.code[:4]} {voucher.code[4:]}", "state": offline.voucher_state(voucher),
            "store": db.session.get(Store, voucher.store_id),
            "qr": url_for("shop.offline_voucher_qr", voucher_id=voucher.id)}


# --- the resident --------------------------------------------------------------------------------

@bp.get("/me/offline")
@login_required
def my_vouchers():
    """我的离线券: vouchers to show at a shop with no signal, and a form for a new one."""
    household = resident_household()
    village_stores = _stores_of(household.village_id)
    return render_template("shop/offline_mine.html", vouchers=[_voucher_view(v) for v in
                                                               offline.recent_vouchers(household.id)],
                           shops=village_stores, balance=max(stores.balance_of(household.id), 0),
                           held=offline.held_of(household.id), limit=current_app.config["OFFLINE_VOUCHER_LIMIT"],
                           form_key=new_form_key())


def _stores_of(village_id: int) -> list[Store]:
    return list(db.session.scalars(select(Store).where(Store.village_id == village_id,
                                                       Store.active.is_(True)).order_by(Store.id)))


@bp.post("/me/offline")
@login_required
def new_voucher():
    resident_household()
    try:
        store = access.get_or_404(Store, form_int(request.form.get("store_id"), _("商店")), _("找不到这个商店"))
        points = form_int(request.form.get("points", "").strip(), _("积分"))

        def action():
            made = offline.issue_voucher(current_user, store, points)
            return {"redirect": url_for("shop.my_vouchers"),
                    "message": _("离线券已生成：%(n)s 分，只能在 %(store)s 使用", n=made.voucher.points, store=store.name)}
        return submit_once(action)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("shop.my_vouchers"))


@bp.get("/offline/vouchers/<int:voucher_id>/qr.png")
@login_required
def offline_voucher_qr(voucher_id):
    """The voucher's QR (its household's members, the committee), signed afresh each time."""
    voucher = offline.voucher_for(current_user, voucher_id)
    with write_transaction():  # the village key is made on first need
        url = offline.issued(voucher).url
    response = send_file(io.BytesIO(qr_png(url)), mimetype="image/png", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- the clerk's offline page --------------------------------------------------------------------

@bp.get("/shop/offline")
@login_required
def offline_page():
    """离线收款: works with no network once opened online (its service worker keeps it)."""
    store = _my_store()
    response = current_app.make_response(render_template("shop/offline.html", store=store))
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/shop/offline-sw.js")
def offline_worker():
    """The service worker, served under /shop/ so that it may control the offline page."""
    response = send_file(STATIC / "js" / "offline-sw.js", mimetype="text/javascript", max_age=0)
    response.headers["Service-Worker-Allowed"] = "/shop/"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/shop/offline/data")
@login_required
def offline_data():
    """What the offline page keeps: the store's items, the village's public key, the store's open
    vouchers (a typed number is checked against them), and a fresh CSRF token for the sync."""
    store = _my_store()
    with write_transaction():
        key = offline_keys.village_key(store.village_id)
        jwk = offline_keys.public_jwk(key)
    items = db.session.scalars(select(Item).where(Item.store_id == store.id, Item.active.is_(True))
                               .order_by(Item.id)).all()
    vouchers = [{"id": v.id, "salt": v.code_salt, "check": v.code_check, "points": v.points,
                 "household": v.household_id, "label": offline.household_label(v.household_id),
                 "expires": offline_keys.expiry_seconds(v.expires_at)} for v in offline.store_open_vouchers(store)]
    response = jsonify({"store": {"id": store.id, "name": store.name}, "alg": key.alg, "key": jwk,
                        "rounds": offline.CODE_CHECK_ROUNDS,
                        "items": [{"id": i.id, "name": i.name, "unit": i.unit, "points": i.points, "stock": i.stock}
                                  for i in items],
                        "vouchers": vouchers, "csrf": generate_csrf(), "at": utcnow().isoformat()})
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.post("/shop/offline/sync")
@login_required
@throttle.code_lookup
def offline_sync():
    """The page's sync: the API's batch of sales (JSON, CSRF header, Idempotency-Key)."""
    store = _my_store()
    try:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise Invalid(_("请用 JSON 对象提交"), code="invalid_json")
        data = SalesRequestSchema().load(body)
    except ValidationError as error:
        return jsonify({"error": {"code": "invalid", "message": _("同步的数据不完整"), "fields": error.messages}}), 422
    except DomainError as error:
        return jsonify({"error": {"code": error.code, "message": error.message}}), error.status
    payload, status, _replayed = run_once(current_user, request.headers.get("Idempotency-Key"), request_body(),
                                          lambda: ({"results": offline.sync_sales(current_user, store,
                                                                                  data["sales"])}, 200))
    return jsonify(payload), status


# --- the committee -------------------------------------------------------------------------------

@bp.get("/shop/offline/conflicts")
@login_required
def offline_conflicts():
    """离线券冲突: second sales of spent vouchers, and offline sales beyond the known stock."""
    village = committee_village()
    rows = offline.conflicts(village)
    vouchers = {v.id: v for v in db.session.scalars(select(offline.OfflineVoucher).where(
        offline.OfflineVoucher.id.in_({row.voucher_id for row in rows} or {-1})))}
    shops = {s.id: s for s in _stores_of(village.id) + [db.session.get(Store, r.store_id) for r in rows]}
    return render_template("shop/offline_conflicts.html", village=village, rows=rows, vouchers=vouchers, shops=shops,
                           short=offline.short_sales(village))


@bp.route("/shop/offline/sheet", methods=["GET", "POST"])
@login_required
def offline_sheet():
    """A printed sheet of a household's vouchers for the month (households with a paper card)."""
    village = committee_village()
    household = None
    number = (request.values.get("number") or "").strip()
    if number:
        household = db.session.scalar(select(Household).where(Household.village_id == village.id,
                                                              Household.number == number))
        if household is None:
            flash(_("没有户号为 %(n)s 的户", n=number), "error")
    if request.method == "POST" and household is not None:
        try:
            store = access.get_or_404(Store, form_int(request.form.get("store_id"), _("商店")), _("找不到这个商店"),
                                      village_id=village.id)
            points = form_int(request.form.get("points", "").strip(), _("每张积分"))
            count = form_int(request.form.get("count", "").strip(), _("张数"))
            limit = current_app.config["OFFLINE_VOUCHER_LIMIT"]
            if not 0 < count <= limit:
                raise Invalid(_("张数必须是 1 到 %(n)s", n=limit), fields={"count": [str(limit)]})

            def action():
                for _n in range(count):
                    offline.issue_voucher(current_user, store, points, household_id=household.id)
                return {"redirect": url_for("shop.offline_sheet", number=household.number),
                        "message": _("已生成 %(n)s 张离线券", n=count)}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
    vouchers = [_voucher_view(v) for v in offline.open_vouchers(household.id)] if household else []
    return render_template("shop/offline_sheet.html", village=village, household=household, number=number,
                           vouchers=vouchers, shops=_stores_of(village.id), form_key=new_form_key(),
                           limit=current_app.config["OFFLINE_VOUCHER_LIMIT"])
