"""Favouritism checks (人情分) on the web: staff declare their relatives' households, the committee
records one for a staff member, and the committee and supervisors read the integrity page (routes
of the ``board`` blueprint; the same services as the API)."""
from __future__ import annotations

from flask import abort, flash, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import periods
from ..awards import integrity
from ..errors import DomainError
from ..extensions import db
from ..people import access, kinships
from ..people.models import Household, User
from .board import bp
from .forms import bounded_int, new_form_key, submit_once


def _work_village():
    """The village where the user proposes or approves (committee or grid manager); 403 otherwise."""
    village = access.first_village(current_user, ("committee", "admin", "grid"))
    if village is None or not (access.is_committee(current_user, village)
                               or access.grid_hamlet_ids(current_user, village)):
        abort(403)
    return village


def _staff_of(village) -> list:
    """(id, name) of the village's committee members and grid managers, for the committee's picker."""
    users = db.session.scalars(select(User).where(User.grants.any(village_id=village.id)).order_by(User.id))
    return [(user.id, user.name) for user in users
            if access.is_committee(user, village) or access.grid_hamlet_ids(user, village)]


@bp.route("/kinships", methods=["GET", "POST"])
@login_required
def kinship_page():
    """亲属申报: declare a relative's household (the committee: for any staff member too)."""
    village = _work_village()
    committee = access.is_committee(current_user, village)
    problems: dict = {}
    status = 200
    if request.method == "POST":
        user_id = request.form.get("user_id", type=bounded_int) if committee else current_user.id
        number = (request.form.get("household") or "").strip()
        household_id = db.session.scalar(select(Household.id).where(Household.village_id == village.id,
                                                                    Household.number == number))
        status = 422
        if household_id is None:
            problems["household"] = [_("本村没有这个户号") if number else _("请填写户号")]
            flash(_("亲属申报有误，请按提示修改"), "error")
        else:
            def action():
                kinship = kinships.declare(current_user, village, user_id=user_id, household_id=household_id,
                                           relation=request.form.get("relation", ""))
                return {"redirect": url_for("board.kinship_page"),
                        "message": _("已登记：%(who)s 与 %(number)s 是亲属，今后这户的积分由其他人经手。",
                                     who=kinship.user.name, number=kinship.household.number)}
            try:
                return submit_once(action)
            except DomainError as error:
                flash(error.message, "error")
                problems = {("household" if key == "household_id" else key): value
                            for key, value in error.fields.items()}
                status = error.status
    items = kinships.kinships_of(village, user=None if committee else current_user)
    return render_template("integrity/kinships.html", village=village, committee=committee, items=items,
                           staff=_staff_of(village) if committee else [], relations=kinships.RELATIONS,
                           problems=problems, typed=request.form, form_key=new_form_key()), status


@bp.get("/integrity")
@login_required
def integrity_page():
    """廉洁检查: the flags of a village for its committee and the supervisors above it."""
    visible = [v for v in access.villages_visible(current_user) if integrity.can_read(current_user, v)]
    if not visible:
        abort(403)
    code = (request.args.get("village") or "").upper()
    village = next((v for v in visible if v.code == code), None) if code else visible[0]
    if village is None:
        abort(404)
    period = request.args.get("period") or None
    problem = None
    try:
        if period:
            periods.check(period)
    except DomainError as error:
        problem, period = error.message, None
    _start, _end, label = integrity.window(period)
    flags = integrity.flags_of(village, period)
    grouped = [(kind, integrity.TITLES[kind], integrity.EXPLANATIONS[kind],
                [flag for flag in flags if flag.kind == kind]) for kind in integrity.KINDS]
    choices = [("", _("最近 12 个月"))] + [(key, periods.label(key)) for key in periods.recent(months=12, quarters=4,
                                                                                             years=3)]
    return render_template("integrity/integrity.html", village=village, grouped=grouped, count=len(flags),
                           label=label, period=period or "", choices=choices, problem=problem,
                           others=[v for v in visible if v.id != village.id]), (422 if problem else 200)
