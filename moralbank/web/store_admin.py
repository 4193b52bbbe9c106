"""The committee's shop pages: its stores and their items, a store's monthly statement and its
settlement, and households' paper cards (routes of the ``shop`` blueprint)."""
from __future__ import annotations

import base64
import io

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, select

from .. import periods
from ..database import write_transaction
from ..errors import DomainError
from ..extensions import db
from ..people import access
from ..people.models import Area, Household
from ..stores import service as stores
from ..stores.models import Item, Store
from ..stores.qr import qr_png
from .board import period_groups
from .forms import committee_village, confirmed, form_int, new_form_key, preview, submit_once
from .shop import bp


def _stores_page(village: Area):
    return render_template("shop/committee_stores.html", village=village, shops=stores.village_stores(village),
                           form_key=new_form_key(), period=periods.current_month(),
                           last_month=periods.last_month())


def _item_change(store_id: int, action_of):
    """Run one change of a store's items once per form key; a refusal goes back to the page with
    its message."""
    village = committee_village()
    try:
        store = access.get_or_404(Store, store_id, _("找不到这个商店"), village_id=village.id)
        return submit_once(action_of(store))
    except DomainError as error:
        flash(error.message, "error")
    return _stores_page(village)


def _number(name: str) -> int:
    return form_int(request.form.get(name), name)


@bp.get("/committee/stores")
@login_required
def committee_stores():
    """The village's stores with their items; the forms post to the two routes below."""
    return _stores_page(committee_village())


@bp.post("/committee/stores/<int:store_id>/items")
@login_required
def add_item(store_id):
    """Put a new item on a store's shelf."""
    def action_of(store):
        fields = {"name": request.form.get("name", ""), "unit": request.form.get("unit", "件"),
                  "points": _number("points"), "stock": _number("stock")}

        def action():
            item = stores.add_item(store, actor=current_user, **fields)
            return {"redirect": url_for("shop.committee_stores"), "message": _("已上架 %(name)s", name=item.name)}
        return action
    return _item_change(store_id, action_of)


@bp.post("/committee/stores/<int:store_id>/items/<int:item_id>")
@login_required
def edit_item(store_id, item_id):
    """Change an item's name, points, stock, or take it off sale."""
    def action_of(store):
        item = access.get_or_404(Item, item_id, _("找不到这件商品"), store_id=store.id)
        changes = {"name": request.form.get("name", ""), "points": _number("points"),
                   "stock": _number("stock"), "active": bool(request.form.get("active"))}

        def action():
            stores.update_item(current_user, item, **changes)
            return {"redirect": url_for("shop.committee_stores"), "message": _("已保存 %(name)s", name=item.name)}
        return action
    return _item_change(store_id, action_of)


def _statement_store(store_id: int) -> Store:
    return access.get_or_404(Store, store_id, _("找不到这个商店"))


@bp.route("/stores/<int:store_id>/statement", methods=["GET", "POST"])
@login_required
def statement(store_id):
    """The month's statement; the committee settles it here (once)."""
    store = _statement_store(store_id)
    period = request.values.get("period") or periods.current_month()
    if request.method == "POST":
        if not access.is_committee(current_user, db.session.get(Area, store.village_id)):
            abort(403)  # readers of the statement (clerk, supervisor) do not settle
        try:
            if not confirmed():
                return _settle_preview(store, period)

            def action():
                settlement = stores.settle(current_user, store, period)
                return {"redirect": url_for("shop.statement", store_id=store.id, period=period),
                        "message": _("已结算 %(period)s：%(n)s 分", period=period, n=settlement.points)}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
    try:
        owed = stores.statement(current_user, store, period)
    except DomainError as error:
        flash(error.message, "error")
        period = periods.current_month()
        owed = stores.statement(current_user, store, period)
    village = db.session.get(Area, store.village_id)
    return render_template("shop/statement.html", s=owed, store=store, village=village,
                           period_label=periods.label(owed.period),
                           periods=period_groups(owed.period, ("month",)),
                           can_settle=access.is_committee(current_user, village), form_key=new_form_key(),
                           refusal=stores.settlement_refusal(owed))


def _settle_preview(store: Store, period: str):
    """What settling would record: the store, the month, how many redemptions, points and money."""
    owed = stores.statement(current_user, store, period)
    village = db.session.get(Area, store.village_id)
    count = sum(1 for row in owed.redemptions if not row["reversed"])
    lines = [_("与 %(store)s 结算 %(period)s：%(n)s 笔兑换，共 %(points)s 分",
               store=store.name, period=periods.label(owed.period), n=count, points=owed.points),
             _("应付 %(yuan)s 元（每分 %(rate)s 元）", yuan="%.2f" % (owed.fen / 100),
               rate="%.2f" % (village.fen_per_point / 100)),
             _("结算以后，这个月这家商店的兑换不能再冲正")]
    refusal = stores.settlement_refusal(owed)
    return preview(_("记录结算"), lines, back=url_for("shop.statement", store_id=store.id, period=owed.period),
                   button=_("确认结算"), refusal=refusal.message if refusal else None)


@bp.get("/stores/<int:store_id>/statement.xlsx")
@login_required
def statement_xlsx(store_id):
    store = _statement_store(store_id)
    period = request.args.get("period") or periods.current_month()
    owed = stores.statement(current_user, store, period)
    village = db.session.get(Area, store.village_id)
    from ..stores.exports import statement_workbook
    data = statement_workbook(owed, village)
    return send_file(io.BytesIO(data), as_attachment=True, download_name=f"statement-{store.id}-{period}.xlsx",
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def _card_household(household_id: int) -> tuple[Household, Area]:
    """A household of the committee member's village, and that village; 404 or 403 otherwise."""
    household = access.get_or_404(Household, household_id, _("找不到这户"))
    village = db.session.get(Area, household.village_id)
    if not access.is_committee(current_user, village):
        abort(403)
    return household, village


def _card_page(household: Household, village: Area):
    from ..stores.models import HouseholdCard
    cards = db.session.scalars(select(HouseholdCard).where(HouseholdCard.household_id == household.id)
                               .order_by(HouseholdCard.id.desc())).all()
    return render_template("shop/card_issue.html", household=household, village=village, cards=cards)


@bp.route("/committee/households/<int:household_id>/card", methods=["GET", "POST"])
@login_required
def household_card(household_id):
    """Issue (or re-issue) a household's paper card with a PIN, and print it."""
    household, village = _card_household(household_id)
    if request.method == "POST":
        try:
            with write_transaction():
                card, token = stores.issue_card(current_user, household, request.form.get("pin", ""))
            from ..edge import public_url
            url = public_url("shop.card_page", t=token)
            qr = base64.b64encode(qr_png(url)).decode()
            return render_template("shop/card_print.html", household=household, village=village, qr=qr,
                                   head=household.head.name if household.head else "")
        except DomainError as error:
            flash(error.message, "error")
    return _card_page(household, village)


@bp.post("/committee/households/<int:household_id>/card/revoke")
@login_required
def revoke_card(household_id):
    """Revoke every paper card of the household (a lost card)."""
    household, village = _card_household(household_id)
    if not confirmed():
        from ..stores.models import HouseholdCard
        active = db.session.scalar(select(func.count()).select_from(HouseholdCard).where(
            HouseholdCard.household_id == household.id, HouseholdCard.revoked_at.is_(None))) or 0
        lines = [_("停用 %(number)s %(head)s 的 %(n)s 张积分卡", number=household.number,
                   head=household.head.name if household.head else "", n=active),
                 _("停用以后，这些卡在商店不能再用；要用卡请重新发卡")]
        return preview(_("停用积分卡"), lines, back=url_for("shop.household_card", household_id=household.id),
                       button=_("确认停用"), refusal=None if active else _("这户没有有效的卡"))
    try:
        with write_transaction():
            count = stores.revoke_card(current_user, household)
        flash(_("已停用 %(n)s 张卡", n=count), "success")
        return redirect(url_for("shop.household_card", household_id=household.id))
    except DomainError as error:
        flash(error.message, "error")
    return _card_page(household, village)
