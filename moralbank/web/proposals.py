"""Pages that propose awards: the grid manager's hamlets, one award, and a resident's declaration
of a good deed (routes of the ``awards`` blueprint; the inspection sheet is ``web.sheet``)."""
from __future__ import annotations

from datetime import date

from flask import flash, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import periods
from ..awards import service as awards
from ..errors import DomainError, Invalid
from ..extensions import db
from ..people import access
from ..people.models import Area, Household, Resident
from .awards import bp
from .forms import (bounded_int, form_choice, form_int, grid_village, new_form_key, resident_household,
                    submit_once)


def households_of(village: Area, hamlet_ids: set[int] | None = None) -> list[dict]:
    """Households with their head's name, for pickers and sheets."""
    query = (select(Household.id, Household.number, Household.hamlet_id, Resident.name)
             .outerjoin(Resident, (Resident.household_id == Household.id) & Resident.is_head.is_(True))
             .where(Household.village_id == village.id).order_by(Household.number))
    if hamlet_ids is not None:
        query = query.where(Household.hamlet_id.in_(hamlet_ids or {-1}))
    return [{"id": i, "number": n, "hamlet_id": h, "head": head or ""} for i, n, h, head in db.session.execute(query)]


def parse_day(text: str | None) -> date | None:
    """A date typed as 2026-11-28 (the date pickers' format), or a readable 422 naming the field."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(_("日期格式应为 2026-11-28"), fields={"occurred_on": [_("格式不对")]})




# --- grid manager ----------------------------------------------------------------------------

@bp.get("/grid")
@login_required
def grid_home():
    """A grid manager's hamlets and their households."""
    village = grid_village()
    hamlet_ids = access.hamlet_scope(current_user, village)
    hamlets = [h for h in village.children if hamlet_ids is None or h.id in hamlet_ids]
    households = households_of(village, hamlet_ids)
    from ..rankings.households import household_page
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
    households = households_of(village, hamlet_ids)
    rules = awards.active_rules(village)
    status = 200
    problems: dict = {}
    if request.method == "POST":
        try:
            upload = request.files.get("photo")
            proposal = awards.Proposal(
                household_id=form_choice(request.form.get("household_id"), "household_id", _("哪一户")),
                rule_id=form_choice(request.form.get("rule_id"), "rule_id", _("哪一项")),
                quantity=form_int(request.form.get("quantity") or 1, "quantity", _("次数"), low=1,
                                  high=awards.MAX_QUANTITY),
                note=request.form.get("note"), occurred_on=parse_day(request.form.get("occurred_on")),
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
            problems = error.fields
    return render_template("awards/propose.html", village=village, households=households, rules=rules,
                           form_key=new_form_key(), form=request.form, today=periods.today(), problems=problems,
                           selected=request.args.get("household", type=bounded_int)), status


# --- resident --------------------------------------------------------------------------------

@bp.route("/me/declare", methods=["GET", "POST"])
@login_required
def declare():
    """A resident declares a good deed of their own household (申报)."""
    household = resident_household()
    village = db.session.get(Area, household.village_id)
    rules = [rule for rule in awards.active_rules(village) if rule.points > 0]
    status = 200
    problems: dict = {}
    if request.method == "POST":
        try:
            upload = request.files.get("photo")
            proposal = awards.Proposal(household_id=household.id,
                                       rule_id=form_choice(request.form.get("rule_id"), "rule_id", _("哪一项")),
                                       note=request.form.get("note"),
                                       occurred_on=parse_day(request.form.get("occurred_on")),
                                       photo=upload.read() if upload and upload.filename else None)

            def action():
                award = awards.propose(current_user, proposal)
                return {"redirect": url_for("web.home"),
                        "message": _("申报已提交：%(rule)s，村委会审核后公示", rule=award.rule.title)}
            return submit_once(action)
        except DomainError as error:
            flash(error.message, "error")
            status = error.status
            problems = error.fields
    return render_template("awards/declare.html", household=household, rules=rules, form_key=new_form_key(),
                           form=request.form, today=periods.today(), problems=problems), status
