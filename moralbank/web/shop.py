"""Shop pages: the resident's payment code, the clerk's redeem page (scan, type or open the
scanned URL), receipts and history, and the clerk's side of paper cards. The committee's stores,
statements and cards are in ``web.store_admin``, on this same blueprint."""
from __future__ import annotations

import io
from datetime import datetime, timezone

from flask import (Blueprint, abort, flash, jsonify, redirect, render_template, request, send_file,
                   url_for)
from flask_babel import gettext as _
from flask_limiter.errors import RateLimitExceeded
from flask_login import current_user, login_required
from sqlalchemy import func, select

from .. import throttle
from ..database import local_zone, utcnow, write_transaction
from ..errors import DomainError, NotFound
from ..extensions import db
from ..pagination import keyset_page
from ..people import access
from ..people.models import Area, Household, Resident
from ..people.service import mask_name
from ..stores import service as stores
from ..stores.models import Item, Redemption, RedemptionCode, Store
from ..stores.qr import qr_png
from .forms import bounded_int, form_int, new_form_key, resident_household, submit_once

bp = Blueprint("shop", __name__)


# --- the resident's payment code -------------------------------------------------------------

def _code_view(record: RedemptionCode) -> dict:
    issued = stores.IssuedCode.of(record)
    return {"code": record.code, "pretty": f"{record.code[:4]} {record.code[4:]}", "url": issued.url,
            "qr": url_for("shop.pay_qr", code=record.code), "expires_at": record.expires_at.isoformat(),
            "seconds_left": max(int((record.expires_at - utcnow()).total_seconds()), 0),
            "status": url_for("shop.pay_status", code=record.code)}


@throttle.code_mint
def _mint_for_page() -> RedemptionCode:
    """A fresh code for the page that opens on none (the household's minting budget counts it)."""
    with write_transaction():
        return stores.issue_code(current_user).record


@bp.get("/me/pay")
@login_required
def pay():
    """我的付款码: a big QR and the number; JavaScript refreshes it before it expires. The page never
    opens on a code about to end: it mints a fresh one (within the household's minting budget; past
    it the page offers the button)."""
    household = resident_household()
    opened = utcnow()
    record = stores.latest_open_code(household.id)
    if record is None:
        try:
            record = _mint_for_page()
        except RateLimitExceeded:
            flash(_("付款码换得太频繁，请稍等一分钟再点“显示付款码”"), "error")
    return render_template("shop/pay.html", code=_code_view(record) if record else None,
                           status_url=url_for("shop.pay_status_household", since=int(opened.timestamp())),
                           balance=max(stores.balance_of(household.id), 0), form_key=new_form_key())


@bp.post("/me/pay")
@login_required
@throttle.code_mint
def new_code():
    """A new code (换一个码, or the page's script shortly before the old one expires); it ends the
    household's previous code."""
    resident_household()
    with write_transaction():
        issued = stores.issue_code(current_user)
        view = _code_view(issued.record)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(view), 201
    return redirect(url_for("shop.pay"))


@bp.get("/me/pay/qr/<code>.png")
@login_required
def pay_qr(code):
    record = stores.drawable_code(current_user, code)  # a used, expired or card code has no picture to show
    response = send_file(io.BytesIO(qr_png(stores.IssuedCode.of(record).url)), mimetype="image/png", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _paid_body(household: Household, record: RedemptionCode | None) -> dict:
    body = {"used": record is not None, "balance": max(stores.balance_of(household.id), 0)}
    if record is not None:
        body["spent"] = db.session.scalar(select(Redemption.points).where(Redemption.code_id == record.id))
    return body


@bp.get("/me/pay/status")
@login_required
def pay_status_household():
    """Polled by the code page: has a shop taken any of the household's codes since the page opened
    (``since``, Unix seconds)? The page swaps codes as they run out or on 换一个码, and the clerk may
    have scanned any of them, so it asks by household, not by code."""
    household = resident_household()
    since = request.args.get("since", type=bounded_int)
    if since is None:
        abort(400)
    opened = datetime.fromtimestamp(since, timezone.utc)
    return jsonify(_paid_body(household, stores.paid_since(household.id, opened)))


@bp.get("/me/pay/status/<code>")
@login_required
def pay_status(code):
    """One code's state (kept for pages opened before the household-wide poll)."""
    household = resident_household()
    record = stores.household_code(current_user, code)
    body = _paid_body(household, record if record.consumed_at is not None else None)
    body["expired"] = record.expires_at <= utcnow()
    return jsonify(body)


# --- the clerk -------------------------------------------------------------------------------

def _my_store() -> Store:
    store = stores.clerk_store(current_user)
    if store is None:
        abort(403)
    return store


@bp.get("/shop")
@login_required
def shop_home():
    store = _my_store()
    recent = db.session.scalars(select(Redemption).where(Redemption.store_id == store.id)
                                .order_by(Redemption.id.desc()).limit(10)).all()
    return render_template("shop/home.html", store=store, recent=_redemption_rows(recent),
                           secure=request.is_secure or request.host.split(":")[0] in ("localhost", "127.0.0.1"))


def _redemption_rows(items) -> list[dict]:
    if not items:
        return []
    heads = dict(db.session.execute(select(Resident.household_id, Resident.name).where(
        Resident.household_id.in_({r.household_id for r in items}), Resident.is_head.is_(True))).all())
    return [{"r": r, "who": mask_name(heads.get(r.household_id, ""))} for r in items]


#: refusals that are about the code itself: the clerk goes back to the number box
CODE_REFUSALS = ("code_used", "code_expired", "code_replaced", "unknown_code")


def _typed_number(text: str) -> str:
    """What the clerk typed in the 8-digit box, to show again; a token from a scanned QR was never
    typed, so the box stays empty rather than holding 32 characters."""
    return text if text and len(text) <= 12 and text.replace(" ", "").replace("-", "").isdigit() else ""


def _code_refused(store: Store, text: str, error: DomainError):
    flash(error.message, "error")
    return render_template("shop/home.html", store=store, recent=[], typed=_typed_number(text),
                           secure=False), error.status


def _cart_page(store: Store, text: str, seen, *, typed=None, problems=None, status: int = 200):
    items = db.session.scalars(select(Item).where(Item.store_id == store.id, Item.active.is_(True))
                               .order_by(Item.id)).all()
    return render_template("shop/redeem.html", store=store, seen=seen, items=items, code_text=text,
                           form_key=new_form_key(), typed=typed or {}, problems=problems or {}), status


@bp.get("/shop/redeem")
@login_required
@throttle.code_lookup
def redeem_page():
    """The page the QR opens (``?t=token``) or the typed number leads to (``?code=12345678``)."""
    store = _my_store()
    text = request.args.get("t") or request.args.get("code") or ""
    if not text:
        return redirect(url_for("shop.shop_home"))
    try:
        seen = stores.preview(current_user, store, text)
    except DomainError as error:
        return _code_refused(store, text, error)
    return _cart_page(store, text, seen)


def _cart_problems(error: DomainError, items_by_name: dict[str, int]) -> dict[str, list[str]]:
    """Where on the cart page a refusal belongs: an item's quantity box, the points box, or the total."""
    problems: dict[str, list[str]] = {}
    for key, messages in (error.fields or {}).items():
        if key.startswith("item-") or key == "points":
            problems.setdefault(key, []).extend(messages)
        elif key == "items" and error.code == "out_of_stock":
            for name in messages:
                if name in items_by_name:
                    problems.setdefault(f"item-{items_by_name[name]}", []).append(_("库存不足"))
    problems.setdefault("total", []).append(error.message)
    return problems


@bp.post("/shop/redeem")
@login_required
@throttle.code_lookup
def redeem():
    """Confirm: the one atomic redemption; then the receipt. A refusal of the code goes back to the
    number box; any other comes back to the cart as the clerk filled it, the problem by its field."""
    store = _my_store()
    text = request.form.get("code", "")
    typed = {key: value for key, value in request.form.items() if key.startswith("item-") or key == "points"}
    try:
        cart = []
        for key, value in typed.items():
            if key.startswith("item-") and value.strip():
                quantity = form_int(value, key, _("数量"), low=0)
                if quantity > 0:
                    cart.append((form_int(key[5:], "item"), quantity))
        points_text = typed.get("points", "").strip()
        points = form_int(points_text, "points", _("或者直接填积分"), low=0,
                          high=stores.MAX_REDEMPTION) if points_text else None
        points = points if points else None

        def action():
            redemption = stores.redeem_with_code(current_user, store, text, items=cart, points=points)
            return {"redirect": url_for("shop.receipt", redemption_id=redemption.id),
                    "message": _("兑换成功：%(n)s 分", n=redemption.points)}
        return submit_once(action)
    except DomainError as error:
        if error.code in CODE_REFUSALS:
            return _code_refused(store, text, error)
        refusal = error
    try:
        seen = stores.preview(current_user, store, text)
    except DomainError as error:
        return _code_refused(store, text, error)
    names = dict(db.session.execute(select(Item.name, Item.id).where(Item.store_id == store.id)).all())
    flash(refusal.message, "error")
    return _cart_page(store, text, seen, typed=typed, problems=_cart_problems(refusal, names),
                      status=refusal.status if refusal.status >= 400 else 422)


@bp.get("/shop/receipts/<int:redemption_id>")
@login_required
def receipt(redemption_id):
    """A printable receipt: what was bought and the balance after."""
    redemption = access.get_or_404(Redemption, redemption_id, _("找不到这张小票"))
    store = db.session.get(Store, redemption.store_id)
    village = db.session.get(Area, store.village_id)
    own = redemption.household_id in access.resident_household_ids(current_user)
    if not (access.is_clerk_of(current_user, store) or access.is_committee(current_user, village) or own):
        raise NotFound(_("找不到这张小票"))
    household = db.session.get(Household, redemption.household_id)
    return render_template("shop/receipt.html", r=redemption, store=store, village=village,
                           who=mask_name(household.head.name if household.head else ""),
                           number=household.number, balance=max(stores.balance_after(redemption), 0))


def _local_midnight():
    """The start of today in the deployment's time zone (as an aware datetime)."""
    return utcnow().astimezone(local_zone()).replace(hour=0, minute=0, second=0, microsecond=0)


@bp.get("/shop/history")
@login_required
def history():
    store = _my_store()
    rows, next_before = keyset_page(select(Redemption).where(Redemption.store_id == store.id), Redemption.id,
                                    limit=50, cursor=request.args.get("before", type=bounded_int))
    today_total = db.session.scalar(select(func.coalesce(func.sum(Redemption.points), 0)).where(
        Redemption.store_id == store.id, Redemption.created_at >= _local_midnight()))
    return render_template("shop/history.html", store=store, rows=_redemption_rows(rows),
                           next_before=next_before, today_total=today_total)


@bp.get("/shop/scan")
@login_required
def scan():
    """In-page scanner (camera access needs https or localhost)."""
    store = _my_store()
    return render_template("shop/scan.html", store=store)


@bp.route("/shop/items", methods=["GET", "POST"])
@login_required
def shop_items():
    """The clerk's stock counts."""
    store = _my_store()
    if request.method == "POST":
        try:
            item = access.get_or_404(Item, form_int(request.form.get("item_id"), "item_id"), _("找不到这件商品"),
                                     store_id=store.id)
            stock_text = request.form.get("stock", "").strip()
            stock = form_int(stock_text, _("库存"))

            def action():
                stores.update_item(current_user, item, stock=stock)
                return {"redirect": url_for("shop.shop_items"),
                        "message": _("%(name)s 库存改为 %(n)s", name=item.name, n=stock_text)}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
    items = db.session.scalars(select(Item).where(Item.store_id == store.id).order_by(Item.id)).all()
    return render_template("shop/items.html", store=store, items=items, form_key=new_form_key())


# --- paper cards at the shop -----------------------------------------------------------------

@bp.route("/shop/card", methods=["GET", "POST"])
@login_required
@throttle.card_pin
def card_page():
    """The URL a paper card's QR opens: the clerk types the household's PIN."""
    store = _my_store()
    token = request.values.get("t", "")
    try:
        card = stores.card_for_token(store, token)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("shop.shop_home"))
    if request.method == "POST":
        try:
            issued = stores.unlock_card(current_user, store, token, request.form.get("pin", ""))
            return redirect(url_for("shop.redeem_page", code=issued.record.code))
        except DomainError as error:
            flash(error.message, "error")
    household = db.session.get(Household, card.household_id)
    return render_template("shop/card.html", store=store, token=token,
                           who=mask_name(household.head.name if household.head else ""), number=household.number)
