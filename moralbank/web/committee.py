"""The committee's pages of the award work: the review queue, the catalogue editor and the
audit log (routes of the ``awards`` blueprint)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from ..audit.models import AuditEntry
from ..awards import service as awards
from ..awards.models import CAP_PERIODS, CATEGORIES, Objection, Rule
from ..database import local_zone
from ..errors import DomainError
from ..extensions import db
from ..people import access
from ..people.models import Area, User
from .awards import PAGE, _award_rows, bp
from .forms import bounded_int, committee_village, form_int, form_ints, new_form_key, submit_once


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


def _village_rule(village: Area, rule_id: int) -> Rule:
    return access.get_or_404(Rule, rule_id, _("找不到这一项"), village_id=village.id)


def _rule_fields(form) -> dict:
    cap_count = (form.get("cap_count") or "").strip()
    return {"category": form.get("category"), "title": form.get("title", ""),
            "points": form_int(form.get("points"), "points", signed=True),
            "cap_count": form_int(cap_count, "cap_count") if cap_count else None,
            "cap_period": (form.get("cap_period") or None) if cap_count else None,
            "photo_required": bool(form.get("photo_required"))}


def _rules_page(village: Area, status: int = 200):
    return render_template("awards/rules.html", village=village, rules=awards.active_rules(village),
                           categories=CATEGORIES, periods=CAP_PERIODS, form_key=new_form_key()), status


def _rule_change(action_of):
    """Run one change of the catalogue once per form key; a refusal goes back to the page (422)
    with its message."""
    village = committee_village()
    try:
        return submit_once(action_of(village))
    except DomainError as error:
        flash(error.message, "error")
        return _rules_page(village, 422)


@bp.get("/committee/rules")
@login_required
def rules():
    """The catalogue editor; its forms post to the three routes below."""
    return _rules_page(committee_village())


@bp.post("/committee/rules/new")
@login_required
def create_rule():
    """Add an item to the catalogue."""
    def action_of(village):
        fields = _rule_fields(request.form)

        def action():
            rule = awards.create_rule(village, actor=current_user, **fields)
            return {"redirect": url_for("awards.rules"), "message": _("已添加「%(title)s」", title=rule.title)}
        return action
    return _rule_change(action_of)


@bp.post("/committee/rules/<int:rule_id>/revise")
@login_required
def revise_rule(rule_id):
    """Revise an item: a new version; awards already made keep their points."""
    def action_of(village):
        fields = _rule_fields(request.form)

        def action():
            rule = awards.revise_rule(_village_rule(village, rule_id), actor=current_user, **fields)
            return {"redirect": url_for("awards.rules"),
                    "message": _("已修改「%(title)s」（第 %(v)s 版；以前的记录分值不变）",
                                 title=rule.title, v=rule.version)}
        return action
    return _rule_change(action_of)


@bp.post("/committee/rules/<int:rule_id>/retire")
@login_required
def retire_rule(rule_id):
    """Retire an item: no new awards under it."""
    def action_of(village):
        def action():
            rule = _village_rule(village, rule_id)
            awards.retire_rule(rule, actor=current_user)
            return {"redirect": url_for("awards.rules"), "message": _("已停用「%(title)s」", title=rule.title)}
        return action
    return _rule_change(action_of)


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
