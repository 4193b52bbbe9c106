"""The committee's pages: the review queue, the catalogue editor, the audit log and the village's
settings (routes of the ``awards`` blueprint)."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from ..audit.models import AuditEntry
from ..awards import service as awards
from ..awards.models import CAP_PERIODS, CATEGORIES, Objection, Rule, RuleStatus
from ..awards.rules import draft_change, draft_rules
from ..database import local_zone, write_transaction
from ..errors import DomainError
from ..extensions import db
from ..pagination import keyset_page
from ..i18n import N_
from ..people import access, villages
from ..people.models import Area, User
from .awards import award_rows, bp
from .forms import bounded_int, committee_village, form_ints, new_form_key, submit_once


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
    queue = awards.review_queue(village, viewer=current_user)
    objections = {}
    if queue:
        for objection in db.session.scalars(select(Objection).where(
                Objection.award_id.in_([a.id for a in queue]))):
            objections.setdefault(objection.award_id, []).append(objection)
    return render_template("awards/review.html", village=village, queue=award_rows(queue),
                           objections=objections, form_key=new_form_key())


def _village_rule(village: Area, rule_id: int) -> Rule:
    return access.get_or_404(Rule, rule_id, _("找不到这一项"), village_id=village.id)


def _typed_number(text: str | None):
    """A whole number where the text is one; anything else passed on as typed, so the catalogue's
    own check names the field and its range in the form's words."""
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,9}", text) else (text or None)


def _rule_fields(form) -> dict:
    cap_count = _typed_number(form.get("cap_count"))
    return {"category": form.get("category"), "title": form.get("title", ""),
            "points": _typed_number(form.get("points")) if (form.get("points") or "").strip() else "",
            "cap_count": cap_count, "cap_period": form.get("cap_period") or None,
            "photo_required": bool(form.get("photo_required")), "veto": bool(form.get("veto"))}


def _rules_page(village: Area, status: int = 200, *, failed=None, problems: dict | None = None):
    """The catalogue editor with the drafts waiting for a meeting; after a refusal, the form that
    failed (``new`` or a rule id) shows what was typed, open, with each problem under its field, and
    the page opens at it."""
    drafts = draft_rules(village)
    return render_template("awards/rules.html", village=village, rules=awards.active_rules(village),
                           drafts=drafts, changes={rule.id: draft_change(rule) for rule in drafts},
                           categories=CATEGORIES, periods=CAP_PERIODS, form_key=new_form_key(),
                           failed=failed, typed=request.form if failed else {},
                           problems=problems or {}), status


def _drafted(rule: Rule, done: str) -> str:
    """The message after a change of the catalogue: done, or drafted for the next meeting."""
    if rule.status == RuleStatus.DRAFT:
        return _("已起草「%(title)s」，村民会议通过后生效", title=rule.title)
    return done


def _rule_change(action_of, failed):
    """Run one change of the catalogue once per form key; a refusal goes back to the page (422)
    with the typed values and the problems next to their fields."""
    village = committee_village()
    try:
        return submit_once(action_of(village))
    except DomainError as error:
        flash(error.message, "error")
        return _rules_page(village, 422, failed=failed, problems=error.fields)


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
            return {"redirect": url_for("awards.rules", _anchor="top"),
                    "message": _drafted(rule, _("已添加「%(title)s」", title=rule.title))}
        return action
    return _rule_change(action_of, "new")


@bp.post("/committee/rules/<int:rule_id>/revise")
@login_required
def revise_rule(rule_id):
    """Revise an item: a new version; awards already made keep their points."""
    def action_of(village):
        fields = _rule_fields(request.form)

        def action():
            rule = awards.revise_rule(_village_rule(village, rule_id), actor=current_user, **fields)
            return {"redirect": url_for("awards.rules", _anchor="top"),
                    "message": _drafted(rule, _("已修改「%(title)s」（第 %(v)s 版；以前的记录分值不变）",
                                                title=rule.title, v=rule.version))}
        return action
    return _rule_change(action_of, rule_id)


@bp.post("/committee/rules/<int:rule_id>/retire")
@login_required
def retire_rule(rule_id):
    """Retire an item: no new awards under it."""
    def action_of(village):
        def action():
            rule = _village_rule(village, rule_id)
            changed = awards.retire_rule(rule, actor=current_user)
            return {"redirect": url_for("awards.rules", _anchor="top"),
                    "message": _drafted(changed, _("已停用「%(title)s」", title=rule.title))}
        return action
    return _rule_change(action_of, rule_id)


#: entries of the audit log on one page
PAGE = 50


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
    entries, next_before = keyset_page(query, AuditEntry.id, limit=PAGE,
                                       cursor=request.args.get("before", type=bounded_int))
    actors = dict(db.session.execute(select(User.id, User.name).where(
        User.id.in_({e.actor_id for e in entries if e.actor_id}))).all()) if entries else {}
    staff = access.users_of_village(village)
    return render_template("awards/audit.html", village=village, entries=entries, actors=actors,
                           staff=staff, next_before=next_before,
                           args=request.args,
                           filters={k: v for k, v in request.args.items() if k != "before"})


# --- the village's settings ------------------------------------------------------------------

#: the settings the page offers, in order, with the label the page shows
SETTINGS = {"notice_days": N_("公示天数"), "code_ttl_seconds": N_("付款码有效秒数"),
            "approval_threshold": N_("需要审核的分值（超过即需村委会审核）"),
            "star_thresholds": N_("星级分数线（从小到大，用空格或逗号隔开）")}


def _setting_value(key: str, text: str):
    """The typed value as the service takes it: whole numbers where the text is one; anything else
    is passed on as typed so the service names the field and its allowed range."""
    if key == "star_thresholds":
        parts = [part for part in re.split(r"[\s,，、]+", text.strip()) if part]
        return [int(part) if part.isascii() and part.isdigit() else part for part in parts]
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else text


#: issue 14's settings, shown as yes/no boxes and a choice of period (a form without the marker
#: field ``governance`` leaves them as they are)
FLAG_SETTINGS = {"rule_changes_need_meeting": N_("积分清单的修改须经村民会议通过"),
                 "veto_blocks_redemption": N_("被一票否决的户不能使用积分"),
                 "veto_hides_ranking": N_("被一票否决的户不出现在积分榜上")}
VETO_PERIOD_LABELS = {"month": N_("到当月底"), "quarter": N_("到当季度末"), "year": N_("到当年底")}


def _governance_changes(form, current: dict) -> dict:
    if not form.get("governance"):
        return {}
    typed = {key: bool(form.get(key)) for key in FLAG_SETTINGS}
    typed["veto_period"] = form.get("veto_period", "")
    return {key: value for key, value in typed.items() if value != current[key]}


#: the expiry setting's label and its modes, as the page shows them
EXPIRY_LABEL = N_("积分清零")
EXPIRY_MODES = {"none": N_("不清零"), "annual": N_("每年清零"), "months": N_("获得后满若干个月清零")}


def _typed_expiry(form) -> dict | None:
    """The expiry setting as typed on the page (None when the form has no expiry field)."""
    mode = form.get("expiry_mode")
    if mode is None:
        return None
    if mode == "annual":
        return {"mode": mode, "on": form.get("expiry_on", "").strip()}
    if mode == "months":
        return {"mode": mode, "months": _setting_value("months", form.get("expiry_months", ""))}
    return {"mode": mode}


@bp.route("/committee/settings", methods=["GET", "POST"])
@login_required
def village_settings():
    """The committee's settings of its village (the same service as PATCH /api/v1/villages/{code})."""
    village = committee_village()
    current = villages.settings_of(village)
    problems: dict = {}
    status = 200
    if request.method == "POST":
        typed = {key: _setting_value(key, request.form.get(key, "")) for key in SETTINGS}
        changes = {key: value for key, value in typed.items() if value != current[key]}
        changes.update(_governance_changes(request.form, current))
        expiry = _typed_expiry(request.form)
        if expiry is not None and expiry != current["expiry"]:
            changes["expiry"] = expiry
        try:
            with write_transaction():
                villages.change_settings(current_user, village, changes)
        except DomainError as error:
            problems = error.fields
            labels = {**SETTINGS, **FLAG_SETTINGS, "veto_period": N_("一票否决的期限"), "expiry": EXPIRY_LABEL}
            flash(error.message + "：" + "、".join(_(labels[key]) for key in problems if key in labels), "error")
            status = 422
        else:
            flash(_("设置已保存") if changes else _("设置没有变化"), "success")
            return redirect(url_for("awards.village_settings"))
    shown = {key: (request.form.get(key, "") if request.method == "POST" else
                   " ".join(map(str, current[key])) if key == "star_thresholds" else str(current[key]))
             for key in SETTINGS}
    policy = current["expiry"]
    expiry_shown = ({"mode": request.form.get("expiry_mode", "none"), "on": request.form.get("expiry_on", ""),
                     "months": request.form.get("expiry_months", "")} if request.method == "POST" else
                    {"mode": policy["mode"], "on": policy.get("on", "12-31"), "months": str(policy.get("months", 24))})
    return render_template("awards/settings.html", village=village, settings=SETTINGS, shown=shown,
                           problems=problems, flags=FLAG_SETTINGS, veto_periods=VETO_PERIOD_LABELS,
                           current=current, expiry=expiry_shown, expiry_label=EXPIRY_LABEL,
                           expiry_modes=EXPIRY_MODES), status
