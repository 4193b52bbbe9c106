"""API resources of the villagers' meetings that adopt the catalogue's drafts (四议两公开)."""
from __future__ import annotations

from flask import g, jsonify, request
from flask_babel import gettext as _

from ..awards import meetings
from ..awards.models import Meeting
from ..awards.rules import draft_change
from ..idempotency import idempotent_api
from ..people import access
from ..people.service import village_by_code
from . import bp
from . import schemas as s
from .openapi import doc
from .resources import load_json, token_required


def meeting_body(meeting: Meeting) -> dict:
    return s.MeetingSchema().dump({
        "id": meeting.id, "held_on": meeting.held_on, "kind": meeting.kind, "kind_label": _(meeting.kind_label),
        "entitled": meeting.entitled, "present": meeting.present, "votes_for": meeting.votes_for,
        "votes_against": meeting.votes_against, "votes_abstain": meeting.votes_abstain,
        "has_minutes": bool(meeting.minutes_path), "line": meetings.meeting_line(meeting),
        "created_at": meeting.created_at,
        "adopted": [{"id": rule.id, "title": rule.title, "version": rule.version, "status": rule.status,
                     "change": draft_change(rule)} for rule in meetings.adopted_by(meeting)],
    })


@bp.post("/villages/<code>/meetings")
@token_required
@doc("Record a villagers' meeting that adopts draft rules (committee): JSON, or multipart/form-data with a "
     "`minutes` file (JPG, PNG or PDF). 422 no_quorum (not more than half of those entitled present), "
     "not_adopted (not more than half of those present in favour), not_a_draft",
     request=s.MeetingCreateSchema, response=s.MeetingSchema, status=201, errors=(403, 404, 409),
     idempotent="optional")
@idempotent_api(required=False)
def create_meeting(code):
    village = village_by_code(code)
    access.require(access.is_committee(g.api_user, village), _("只有村委会可以记录村民会议"))
    minutes = None
    if request.mimetype == "multipart/form-data":
        form = {key: request.form.getlist(key) if key == "adopts" else request.form[key] for key in request.form}
        data = s.MeetingFormSchema().load(form)
        upload = request.files.get("minutes")
        minutes = upload.read() if upload else None
    else:
        data = load_json(s.MeetingCreateSchema())
    meeting = meetings.record_meeting(g.api_user, village, minutes=minutes, **data)
    return meeting_body(meeting), 201


@bp.get("/villages/<code>/meetings")
@token_required
@doc("The village's meetings, newest first, each with the drafts it adopted (staff)",
     response=s.MeetingListSchema, errors=(403, 404))
def list_meetings(code):
    village = village_by_code(code)
    access.require(access.is_staff(g.api_user, village), _("只有本村工作人员可以查看"))
    return jsonify({"items": [meeting_body(meeting) for meeting in meetings.meetings_of(village)], "next": None})
