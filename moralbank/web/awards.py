"""Pages of the award work shared by every role: the public notice with objections, the award
detail with its photo, the reversal; and ``award_rows``, the awards as lists show them. The
proposal and committee pages are in ``web.proposals`` and ``web.committee``, on this same
blueprint."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from ..audit.models import AuditEntry
from ..awards import service as awards
from ..awards.models import Award, Objection, Rule
from ..awards.photos import photo_file
from ..database import utcnow
from ..errors import DomainError
from ..extensions import db
from ..ledger.service import request_key
from ..people import access
from ..people.models import Area, Household, Resident, User
from ..people.service import mask_name, village_by_code
from .forms import confirmed, form_int, new_form_key, preview, safe_next, submit_once

bp = Blueprint("awards", __name__)



def award_rows(items: list[Award], *, masked: bool = False) -> list[dict]:
    """Awards with household, hamlet, rule and proposer names, loaded in a few queries."""
    if not items:
        return []
    household_ids = {a.household_id for a in items}
    heads = dict(db.session.execute(select(Resident.household_id, Resident.name).where(
        Resident.household_id.in_(household_ids), Resident.is_head.is_(True))).all())
    households = {h.id: h for h in db.session.scalars(select(Household).where(Household.id.in_(household_ids)))}
    hamlets = {a.id: a.name for a in db.session.scalars(select(Area).where(
        Area.id.in_({h.hamlet_id for h in households.values()})))}
    rules = {r.id: r for r in db.session.scalars(select(Rule).where(Rule.id.in_({a.rule_id for a in items})))}
    users = dict(db.session.execute(select(User.id, User.name).where(
        User.id.in_({a.proposed_by_id for a in items if a.proposed_by_id})) ).all())
    rows = []
    for award in items:
        household = households[award.household_id]
        head = heads.get(award.household_id, "")
        rows.append({"award": award, "rule": rules[award.rule_id],
                     "household": household.number if not masked else None,
                     "head": mask_name(head) if masked else head,
                     "hamlet": hamlets.get(household.hamlet_id, ""),
                     "proposer": users.get(award.proposed_by_id, ""),
                     "status_label": awards.status_label(award.status)})
    return rows


# --- public notice ---------------------------------------------------------------------------

@bp.route("/v/<code>/notices", methods=["GET", "POST"])
def notices(code):
    """公示: awards in public notice, with names masked; residents of the village may object."""
    village = village_by_code(code)
    can_object = access.lives_in(current_user, village)
    if request.method == "POST":
        if not can_object:
            abort(403)
        award_id = form_int(request.form.get("award_id"), "award_id")
        reason = request.form.get("reason", "")
        try:
            def action():
                awards.object_to(current_user, award_id, reason)
                return {"redirect": url_for("awards.notices", code=village.code),
                        "message": _("异议已提交，村委会将重新审核这条记录")}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
    rows = award_rows(awards.in_notice(village), masked=True)
    return render_template("awards/notices.html", village=village, rows=rows, can_object=can_object,
                           form_key=new_form_key(), now=utcnow())


# --- award detail and photo ------------------------------------------------------------------

@bp.get("/awards/<int:award_id>")
@login_required
def award_detail(award_id):
    award = awards.readable_award(current_user, award_id)
    row = award_rows([award])[0]
    objections = db.session.scalars(select(Objection).where(Objection.award_id == award.id)).all()
    history = db.session.scalars(select(AuditEntry).where(AuditEntry.target_type == "award",
                                                          AuditEntry.target_id == award.id)
                                 .order_by(AuditEntry.id)).all()
    names = dict(db.session.execute(select(User.id, User.name).where(
        User.id.in_({h.actor_id for h in history if h.actor_id} | {o.user_id for o in objections}))).all())
    transfer = awards.award_transfer(award)
    village = db.session.get(Area, award.village_id)
    # Objectors and reviewers are named to the village's staff only, not to the household.
    staff = access.is_staff(current_user, village)
    return render_template("awards/detail.html", row=row, award=award, objections=objections,
                           history=history if staff else [], names=names if staff else {}, staff=staff,
                           transfer=transfer, reversed=awards.is_reversed(transfer),
                           is_committee=access.is_committee(current_user, village), form_key=new_form_key())


@bp.post("/transfers/<int:transfer_id>/reverse")
@login_required
def reverse(transfer_id):
    """Committee reversal of a posted transfer, from the award page."""
    back = safe_next(request.form.get("back")) or url_for("web.home")
    try:
        if not confirmed():
            return _reversal_preview(transfer_id, back)

        def action():
            awards.reverse_transfer(current_user, transfer_id, request.form.get("reason", ""),
                                    idempotency_key=request_key("reversal", current_user.id,
                                                                request.form["idempotency_key"]))
            return {"redirect": back, "message": _("已冲正，积分和得分已恢复")}
        return submit_once(action)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(back)


def _reversal_preview(transfer_id: int, back: str):
    """What a reversal would undo: the award or the purchase, the household, the points."""
    from ..ledger.models import Transfer
    from ..stores.models import Redemption, Store

    transfer = db.session.get(Transfer, transfer_id)
    if transfer is None:
        abort(404)
    village = db.session.get(Area, transfer.village_id)
    if not access.is_committee(current_user, village):
        abort(403)
    reason = request.form.get("reason", "").strip()
    if transfer.code == "redemption" and transfer.redemption_id:
        redemption = db.session.get(Redemption, transfer.redemption_id)
        store = db.session.get(Store, redemption.store_id)
        household = db.session.get(Household, redemption.household_id)
        lines = [_("冲正兑换 #%(id)s（%(store)s）：退回 %(points)s 分给 %(number)s %(head)s，商品放回货架",
                   id=redemption.id, store=store.name, points=transfer.amount, number=household.number,
                   head=household.head.name if household.head else "")]
    elif transfer.award_id:
        row = award_rows([db.session.get(Award, transfer.award_id)])[0]
        change = -transfer.amount if transfer.code == "award" else transfer.amount
        lines = [_("冲正「%(rule)s」：%(number)s %(head)s 的积分和得分 %(change)s 分",
                   rule=row["rule"].title, number=row["household"], head=row["head"], change="%+d" % change)]
    else:
        lines = [_("冲正这笔积分：%(points)s 分", points=transfer.amount)]
    lines.append(_("冲正原因：%(reason)s", reason=reason or "—"))
    refusal = (_("这笔已经冲正过了") if awards.is_reversed(transfer)
               else _("请填写冲正原因") if not reason else None)
    return preview(_("冲正"), lines, back=back, button=_("确认冲正"), refusal=refusal)


@bp.get("/awards/<int:award_id>/photo")
@login_required
def photo(award_id):
    """The evidence photo, only for staff of the village and the household."""
    award = awards.readable_award(current_user, award_id)
    if not award.photo_path:
        abort(404)
    path = photo_file(award.photo_path, thumb=request.args.get("thumb") == "1")
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype="image/jpeg", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
