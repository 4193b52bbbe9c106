"""API resources of the favouritism checks (人情分): kinship declarations and the integrity flags."""
from __future__ import annotations

from flask import g, jsonify, request
from flask_babel import gettext as _
from marshmallow import Schema, fields, validate

from ..awards import integrity
from ..database import write_transaction
from ..people import access, kinships
from ..people.service import village_by_code
from . import bp
from .openapi import doc
from .resources import load_json, token_required
from .schemas import ID_MAX, PERIOD_PATTERN, StrictInteger, WholeRegexp


class KinshipRequestSchema(Schema):
    user_id = StrictInteger(required=True, validate=validate.Range(min=1, max=ID_MAX),
                            metadata={"description": "the staff member who is related (yourself unless committee)"})
    household_id = StrictInteger(required=True, validate=validate.Range(min=1, max=ID_MAX))
    relation = fields.String(required=True, validate=validate.Length(min=1, max=kinships.RELATION_LENGTH),
                             metadata={"description": "父母, 子女, 兄弟姐妹, … (at most 16 characters)"})


class KinshipSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    user_name = fields.String()
    household_id = fields.Integer()
    household_number = fields.String()
    relation = fields.String()
    declared_by_id = fields.Integer()
    created_at = fields.DateTime()


class KinshipListSchema(Schema):
    items = fields.List(fields.Nested(KinshipSchema))
    next = fields.String(allow_none=True, metadata={"description": "always null: the list is whole"})


class IntegrityArgsSchema(Schema):
    period = fields.String(load_default=None, validate=WholeRegexp(PERIOD_PATTERN),
                           metadata={"description": "2026-11, 2026-Q4, 2026 or all; the last 12 months when absent"})


class FlagSchema(Schema):
    kind = fields.String(metadata={"description": "concentrated, outlier_proposer, rubber_stamp, relative, "
                                                  "self_hamlet"})
    user_id = fields.Integer(metadata={"description": "the staff member the question is about"})
    user_name = fields.String()
    household_id = fields.Integer(allow_none=True)
    household_number = fields.String(allow_none=True)
    detail = fields.String(metadata={"description": "what was seen, in words"})
    value = fields.Float(metadata={"description": "the figure flagged (percent, points per household, approvals "
                                                  "in a row, points)"})
    peer_median = fields.Float(allow_none=True, metadata={"description": "the same figure's median among the "
                                                                         "village's other staff; null when none"})
    title = fields.String()
    explanation = fields.String(metadata={"description": "what the kind means; a flag is a question, not a "
                                                         "verdict"})


class IntegritySchema(Schema):
    village = fields.String()
    period = fields.String(allow_none=True)
    period_label = fields.String()
    items = fields.List(fields.Nested(FlagSchema))


def _kinship_body(kinship) -> dict:
    return {"id": kinship.id, "user_id": kinship.user_id, "user_name": kinship.user.name,
            "household_id": kinship.household_id, "household_number": kinship.household.number,
            "relation": kinship.relation, "declared_by_id": kinship.declared_by_id,
            "created_at": kinship.created_at}


@bp.post("/villages/<code>/kinships")
@token_required
@doc("Declare that a staff member is related to a household (staff for themselves; the committee for any staff "
     "member): they may then neither propose nor approve its awards (403 conflict_of_interest); 409 "
     "already_declared", request=KinshipRequestSchema, response=KinshipSchema, status=201,
     errors=(403, 404, 409))
def declare_kinship(code):
    village = village_by_code(code)
    access.require(access.is_staff(g.api_user, village), _("只有本村工作人员申报亲属"))
    data = load_json(KinshipRequestSchema())
    with write_transaction():
        kinship = kinships.declare(g.api_user, village, **data)
        body = KinshipSchema().dump(_kinship_body(kinship))
    return jsonify(body), 201


@bp.get("/villages/<code>/kinships")
@token_required
@doc("Kinship declarations of the village: all of them for the committee and supervisors, one's own for other "
     "staff", response=KinshipListSchema, errors=(403, 404))
def list_kinships(code):
    village = village_by_code(code)
    user = g.api_user
    access.require(access.is_staff(user, village), _("只有本村工作人员可以查看"))
    everyone = access.sees_whole_village(user, village)
    items = kinships.kinships_of(village, user=None if everyone else user)
    return jsonify({"items": KinshipSchema(many=True).dump([_kinship_body(k) for k in items]), "next": None})


def flag_body(flag) -> dict:
    return {"kind": flag.kind, "user_id": flag.user_id, "user_name": flag.user_name,
            "household_id": flag.household_id, "household_number": flag.household_number,
            "detail": flag.detail, "value": flag.value, "peer_median": flag.peer_median,
            "title": str(integrity.TITLES[flag.kind]), "explanation": str(integrity.EXPLANATIONS[flag.kind])}


@bp.get("/villages/<code>/integrity")
@token_required
@doc("Favouritism checks (人情分) of the village for the committee and supervisors: patterns to ask about, "
     "not verdicts", response=IntegritySchema, errors=(403, 404), query=IntegrityArgsSchema)
def get_integrity(code):
    village = village_by_code(code)
    access.require(integrity.can_read(g.api_user, village), _("只有村委会和督导可以查看"))
    args = IntegrityArgsSchema().load(request.args)
    _start, _end, label = integrity.window(args["period"])
    flags = integrity.flags_of(village, args["period"])
    return jsonify(IntegritySchema().dump({"village": village.code, "period": args["period"], "period_label": label,
                                           "items": [flag_body(flag) for flag in flags]}))
