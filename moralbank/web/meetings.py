"""Villagers' meetings on the web: the committee records a meeting and picks the drafts it adopted
(routes of the ``awards`` blueprint); the public board shows the catalogue in force with the meeting
that adopted each item, and its print view (routes of the ``board`` blueprint)."""
from __future__ import annotations

import re
from datetime import date

from flask import abort, flash, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..awards import meetings
from ..awards.minutes import minutes_file
from ..awards.models import MEETING_KINDS, Meeting
from ..awards.rules import draft_change, draft_rules
from ..errors import DomainError
from ..extensions import db
from ..i18n import N_
from ..people import access
from ..people.models import Area
from ..people.service import village_by_code
from .awards import bp
from .board import bp as board_bp
from .forms import committee_village, form_ints, new_form_key, submit_once

#: the figures of the form, in order, with the label the page shows
FIGURES = {"entitled": N_("应到人数"), "present": N_("实到人数"), "votes_for": N_("赞成票"),
           "votes_against": N_("反对票"), "votes_abstain": N_("弃权票")}
CHANGE_LABELS = {"new": N_("新增"), "revision": N_("修改"), "retirement": N_("停用")}

_DIGITS = re.compile(r"[0-9]{1,7}")


def _figure(text: str):
    """A typed count as the service takes it: a whole number, or the text itself so the service
    names the field and its range."""
    text = (text or "").strip()
    return int(text) if _DIGITS.fullmatch(text) else text


def _held_on(text: str):
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        return text


def _page(village, *, status: int = 200, problems: dict | None = None, typed: dict | None = None,
          chosen: list[int] | None = None):
    drafts = draft_rules(village)
    return render_template(
        "awards/meetings.html", village=village, drafts=drafts, changes={r.id: draft_change(r) for r in drafts},
        change_labels=CHANGE_LABELS, kinds=MEETING_KINDS, figures=FIGURES, problems=problems or {},
        typed=typed or {}, chosen=set(chosen or []), form_key=new_form_key(),
        meetings=[(m, meetings.meeting_line(m), meetings.adopted_by(m)) for m in meetings.meetings_of(village, 20)],
    ), status


@bp.route("/committee/meetings", methods=["GET", "POST"])
@login_required
def meetings_page():
    """Record a villagers' meeting and the drafts it adopted; the meetings recorded before."""
    village = committee_village()
    if request.method == "GET":
        return _page(village)
    typed = {key: request.form.get(key, "") for key in ("held_on", "kind", *FIGURES)}
    chosen = form_ints(request.form.getlist("adopts"))
    upload = request.files.get("minutes")
    minutes = upload.read() if upload and upload.filename else None

    def action():
        meeting = meetings.record_meeting(
            current_user, village, held_on=_held_on(typed["held_on"]), kind=typed["kind"],
            adopts=chosen, minutes=minutes, **{key: _figure(typed[key]) for key in FIGURES})
        return {"redirect": url_for("awards.meetings_page"),
                "message": _("已记录：%(line)s；通过 %(n)s 项", line=meetings.meeting_line(meeting),
                             n=len(chosen))}
    try:
        return submit_once(action)
    except DomainError as error:
        flash(error.message, "error")
        return _page(village, status=422, problems=error.fields, typed=typed, chosen=chosen)


@bp.get("/committee/meetings/<int:meeting_id>/minutes")
@login_required
def meeting_minutes(meeting_id):
    """The minutes of a meeting, for the village's staff and residents."""
    meeting = access.get_or_404(Meeting, meeting_id, _("找不到这次会议"))
    village = db.session.get(Area, meeting.village_id)
    if not (access.is_staff(current_user, village) or access.lives_in(current_user, village)) \
            or not meeting.minutes_path:
        abort(404)
    path, mimetype = minutes_file(meeting.minutes_path)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype=mimetype, max_age=3600)


@board_bp.get("/v/<code>/catalogue")
def catalogue(code):
    """积分清单: the catalogue in force, each item with the meeting that adopted it. ``?print=1``
    lays it out for an A4 notice board."""
    village = village_by_code(code)
    items = [(rule, meetings.meeting_line(meeting) if meeting else None)
             for rule, meeting in meetings.catalogue_in_force(village)]
    template = "board/print_catalogue.html" if request.args.get("print") else "board/catalogue.html"
    return render_template(template, village=village, items=items)
