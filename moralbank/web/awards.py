"""Pages of the award work: propose, inspection sheet, declare, review queue, catalogue,
public notice with objections, award detail with its photo, and the audit log."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import periods
from ..audit.models import AuditEntry
from ..awards import service as awards
from ..awards.models import CAP_PERIODS, CATEGORIES, Award, Objection, Rule
from ..awards.photos import photo_file
from ..database import local_zone, utcnow
from ..errors import DomainError, Invalid
from ..extensions import db
from ..ledger.service import request_key
from ..people import access
from ..people.models import Area, Household, Resident, User
from ..people.service import mask_name, village_by_code
from .forms import (bounded_int, committee_village, form_int, form_ints, grid_village, new_form_key, safe_next,
                    submit_once)

bp = Blueprint("awards", __name__)

PAGE = 50


def _households(village: Area, hamlet_ids: set[int] | None = None) -> list[dict]:
    """Households with their head's name, for pickers and sheets."""
    query = (select(Household.id, Household.number, Household.hamlet_id, Resident.name)
             .outerjoin(Resident, (Resident.household_id == Household.id) & Resident.is_head.is_(True))
             .where(Household.village_id == village.id).order_by(Household.number))
    if hamlet_ids is not None:
        query = query.where(Household.hamlet_id.in_(hamlet_ids or {-1}))
    return [{"id": i, "number": n, "hamlet_id": h, "head": head or ""} for i, n, h, head in db.session.execute(query)]


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(_("日期格式应为 2026-11-28"), fields={"occurred_on": [_("格式不对")]})


def _int(text, field: str) -> int:
    return form_int(text, field)


# --- grid manager ----------------------------------------------------------------------------

@bp.get("/grid")
@login_required
def grid_home():
    """A grid manager's hamlets and their households."""
    village = grid_village()
    hamlet_ids = access.hamlet_scope(current_user, village)
    hamlets = [h for h in village.children if hamlet_ids is None or h.id in hamlet_ids]
    households = _households(village, hamlet_ids)
    from ..people.queries import household_page
    summaries = {item["id"]: item for item in household_page(village, hamlet_ids=hamlet_ids, limit=1000)[0]}
    by_hamlet = {h.id: [dict(hh, **summaries.get(hh["id"], {})) for hh in households if hh["hamlet_id"] == h.id]
                 for h in hamlets}
    return render_template("awards/grid.html", village=village, hamlets=hamlets, by_hamlet=by_hamlet)


@bp.route("/awards/new", methods=["GET", "POST"])
@login_required
def propose():
    """Propose one award (grid manager, committee) with an optional photo."""
    village = grid_village()
    hamlet_ids = access.hamlet_scope(current_user, village)
    households = _households(village, hamlet_ids)
    rules = awards.active_rules(village)
    status = 200
    if request.method == "POST":
        try:
            upload = request.files.get("photo")
            proposal = awards.Proposal(
                household_id=_int(request.form.get("household_id"), "household_id"),
                rule_id=_int(request.form.get("rule_id"), "rule_id"),
                quantity=_int(request.form.get("quantity") or 1, "quantity"),
                note=request.form.get("note"), occurred_on=_parse_date(request.form.get("occurred_on")),
                photo=upload.read() if upload and upload.filename else None)

            def action():
                award = awards.propose(current_user, proposal)
                return {"redirect": url_for("awards.propose"),
                        "message": _("已提交：%(rule)s %(points)+d 分，等待村委会审核",
                                     rule=award.rule.title, points=award.points)}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
            status = error.status
    return render_template("awards/propose.html", village=village, households=households, rules=rules,
                           form_key=new_form_key(), form=request.form, today=periods.today(),
                           selected=request.args.get("household", type=bounded_int)), status


@bp.route("/grid/sheet", methods=["GET", "POST"])
@login_required
def sheet():
    """The monthly inspection sheet (评分表): households of a hamlet × chosen rules, submitted as one batch."""
    village = grid_village()
    hamlet_ids = access.hamlet_scope(current_user, village)
    hamlets = [h for h in village.children if hamlet_ids is None or h.id in hamlet_ids]
    if not hamlets:
        abort(403)
    hamlet_id = request.values.get("hamlet", type=bounded_int) or hamlets[0].id
    hamlet = next((h for h in hamlets if h.id == hamlet_id), None)
    if hamlet is None:
        abort(403)
    all_rules = [rule for rule in awards.active_rules(village)]
    chosen_ids = form_ints(request.values.getlist("rules"))
    if not chosen_ids:
        chosen_ids = [rule.id for rule in all_rules if rule.category == "hygiene"][:4]
    chosen = [rule for rule in all_rules if rule.id in chosen_ids]
    households = _households(village, {hamlet.id})
    status = 200
    problems: dict = {}
    if request.method == "POST":
        occurred_on = None
        try:
            occurred_on = _parse_date(request.form.get("occurred_on"))
            rows = []
            for household in households:
                photo = request.files.get(f"photo-{household['id']}")
                data = photo.read() if photo and photo.filename else None
                for rule in chosen:
                    if request.form.get(f"cell-{household['id']}-{rule.id}"):
                        label = f"{household['number']} {household['head']} · {rule.title}"
                        rows.append((label, awards.Proposal(household_id=household["id"], rule_id=rule.id,
                                                            occurred_on=occurred_on, photo=data)))

            def action():
                created = awards.propose_batch(current_user, rows)
                return {"redirect": url_for("awards.sheet", hamlet=hamlet.id, rules=chosen_ids),
                        "message": _("评分表已提交：%(n)s 条记录等待村委会审核", n=len(created))}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
            problems = error.fields
            status = error.status
    return render_template("awards/sheet.html", village=village, hamlets=hamlets, hamlet=hamlet,
                           all_rules=all_rules, chosen=chosen, households=households, problems=problems,
                           bad_numbers={label.split(" ", 1)[0] for label in problems},
                           form_key=new_form_key(), form=request.form, today=periods.today()), status


# --- resident --------------------------------------------------------------------------------

@bp.route("/me/declare", methods=["GET", "POST"])
@login_required
def declare():
    """A resident declares a good deed of their own household (申报)."""
    household = access.own_household(current_user)
    if household is None:
        abort(403)
    village = db.session.get(Area, household.village_id)
    rules = [rule for rule in awards.active_rules(village) if rule.points > 0]
    status = 200
    if request.method == "POST":
        try:
            upload = request.files.get("photo")
            proposal = awards.Proposal(household_id=household.id,
                                       rule_id=_int(request.form.get("rule_id"), "rule_id"),
                                       note=request.form.get("note"),
                                       occurred_on=_parse_date(request.form.get("occurred_on")),
                                       photo=upload.read() if upload and upload.filename else None)

            def action():
                award = awards.propose(current_user, proposal)
                return {"redirect": url_for("web.home"),
                        "message": _("申报已提交：%(rule)s，村委会审核后公示", rule=award.rule.title)}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
            status = error.status
    return render_template("awards/declare.html", household=household, rules=rules, form_key=new_form_key(),
                           form=request.form, today=periods.today()), status


# --- committee -------------------------------------------------------------------------------

@bp.route("/committee/review", methods=["GET", "POST"])
@login_required
def review():
    """The review queue: approve or reject several awards at once."""
    village = committee_village()
    if request.method == "POST":
        ids = form_ints(request.form.getlist("award"))
        decision = request.form.get("decision")
        reason = request.form.get("reason", "")
        if not ids:
            flash(_("请先勾选要处理的记录"), "error")
            return redirect(url_for("awards.review"))
        if decision not in ("approve", "reject"):
            abort(400)

        def action():
            outcome = awards.review_batch(current_user, ids, decision, reason)
            done = len(outcome.decided)
            message = (_("已通过 %(n)s 条。", n=done) if decision == "approve"
                       else _("已退回 %(n)s 条（未通过）。", n=done))
            if outcome.refused:
                message += " " + _("未处理：") + "；".join(f"#{award_id}: {error.message}"
                                                       for award_id, error in outcome.refused)
            return {"redirect": url_for("awards.review"), "message": message,
                    "category": "error" if outcome.refused else "success"}
        return submit_once(action)
    queue = awards.review_queue(village)
    objections = {}
    if queue:
        for objection in db.session.scalars(select(Objection).where(
                Objection.award_id.in_([a.id for a in queue]))):
            objections.setdefault(objection.award_id, []).append(objection)
    return render_template("awards/review.html", village=village, queue=_award_rows(queue),
                           objections=objections, form_key=new_form_key())


def _award_rows(items: list[Award], *, masked: bool = False) -> list[dict]:
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


def _village_rule(village: Area, rule_id) -> Rule:
    return access.get_or_404(Rule, _int(rule_id, "rule_id"), _("找不到这一项"), village_id=village.id)


def _rule_fields(form) -> dict:
    cap_count = (form.get("cap_count") or "").strip()
    return {"category": form.get("category"), "title": form.get("title", ""),
            "points": form_int(form.get("points"), "points", signed=True),
            "cap_count": form_int(cap_count, "cap_count") if cap_count else None,
            "cap_period": (form.get("cap_period") or None) if cap_count else None,
            "photo_required": bool(form.get("photo_required"))}


@bp.route("/committee/rules", methods=["GET", "POST"])
@login_required
def rules():
    """The catalogue editor: add, revise (new version) or retire items."""
    village = committee_village()
    if request.method == "POST":
        op = request.form.get("op")
        try:
            if op == "retire":
                def action():
                    rule = _village_rule(village, request.form.get("rule_id"))
                    awards.retire_rule(rule, actor=current_user)
                    return {"redirect": url_for("awards.rules"),
                            "message": _("已停用「%(title)s」", title=rule.title)}
            elif op in ("create", "revise"):
                fields = _rule_fields(request.form)

                def action():
                    if op == "create":
                        rule = awards.create_rule(village, actor=current_user, **fields)
                        return {"redirect": url_for("awards.rules"),
                                "message": _("已添加「%(title)s」", title=rule.title)}
                    rule = awards.revise_rule(_village_rule(village, request.form.get("rule_id")),
                                              actor=current_user, **fields)
                    return {"redirect": url_for("awards.rules"),
                            "message": _("已修改「%(title)s」（第 %(v)s 版；以前的记录分值不变）",
                                         title=rule.title, v=rule.version)}
            else:
                abort(400)
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
    catalogue = awards.active_rules(village)
    return render_template("awards/rules.html", village=village, rules=catalogue, categories=CATEGORIES,
                           periods=CAP_PERIODS, form_key=new_form_key()), 200 if request.method == "GET" else 422


@bp.get("/committee/audit")
@login_required
def audit_log():
    """The audit log of the village, filtered by action, person and dates."""
    village = committee_village()
    query = select(AuditEntry).where(AuditEntry.village_id == village.id)
    action = request.args.get("action", "").strip()
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    actor = request.args.get("actor", type=bounded_int)
    if actor:
        query = query.where(AuditEntry.actor_id == actor)
    zone = local_zone()
    try:
        if request.args.get("from"):
            start = datetime.combine(date.fromisoformat(request.args["from"]), time(), zone)
            query = query.where(AuditEntry.created_at >= start)
        if request.args.get("to"):
            end = datetime.combine(date.fromisoformat(request.args["to"]) + timedelta(days=1), time(), zone)
            query = query.where(AuditEntry.created_at < end)
    except (ValueError, OverflowError):
        flash(_("日期格式应为 2026-11-28"), "error")
    before = request.args.get("before", type=bounded_int)
    if before:
        query = query.where(AuditEntry.id < before)
    entries = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(PAGE + 1)).all()
    actors = dict(db.session.execute(select(User.id, User.name).where(
        User.id.in_({e.actor_id for e in entries if e.actor_id}))).all()) if entries else {}
    staff = access.users_of_village(village)
    return render_template("awards/audit.html", village=village, entries=entries[:PAGE], actors=actors,
                           staff=staff, next_before=entries[PAGE - 1].id if len(entries) > PAGE else None,
                           args=request.args,
                           filters={k: v for k, v in request.args.items() if k != "before"})


# --- public notice ---------------------------------------------------------------------------

@bp.route("/v/<code>/notices", methods=["GET", "POST"])
def notices(code):
    """公示: awards in public notice, with names masked; residents of the village may object."""
    village = village_by_code(code)
    can_object = access.lives_in(current_user, village)
    if request.method == "POST":
        if not can_object:
            abort(403)
        award_id = _int(request.form.get("award_id"), "award_id")
        reason = request.form.get("reason", "")
        try:
            def action():
                awards.object_to(current_user, award_id, reason)
                return {"redirect": url_for("awards.notices", code=village.code),
                        "message": _("异议已提交，村委会将重新审核这条记录")}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
    rows = _award_rows(awards.in_notice(village), masked=True)
    return render_template("awards/notices.html", village=village, rows=rows, can_object=can_object,
                           form_key=new_form_key(), now=utcnow())


# --- award detail and photo ------------------------------------------------------------------

@bp.get("/awards/<int:award_id>")
@login_required
def award_detail(award_id):
    award = awards.readable_award(current_user, award_id)
    row = _award_rows([award])[0]
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
        def action():
            awards.reverse_transfer(current_user, transfer_id, request.form.get("reason", ""),
                                    idempotency_key=request_key("reversal", current_user.id,
                                                                request.form["idempotency_key"]))
            return {"redirect": back, "message": _("已冲正，积分和得分已恢复")}
        return submit_once(action)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(back)


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
