"""Marshmallow schemas of the API (the OpenAPI document is generated from them)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate


class ErrorBody(Schema):
    code = fields.String(required=True, metadata={"description": "machine code, e.g. insufficient_points"})
    message = fields.String(required=True, metadata={"description": "a sentence for the user, Chinese first"})
    fields = fields.Dict(keys=fields.String(), values=fields.Raw(),
                         metadata={"description": "per-field messages"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBody, required=True)


class TokenRequestSchema(Schema):
    phone = fields.String(required=True, validate=validate.Length(min=5, max=20))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256), load_only=True)


class UserBriefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    roles = fields.List(fields.String())


class TokenSchema(Schema):
    token = fields.String(metadata={"description": "send as Authorization: Bearer TOKEN"})
    expires_at = fields.DateTime()
    user = fields.Nested(UserBriefSchema)


class HouseholdSchema(Schema):
    id = fields.Integer()
    number = fields.String(metadata={"description": "户号"})
    head = fields.String(metadata={"description": "户主"})
    hamlet = fields.String(metadata={"description": "屯/组 name"})
    hamlet_id = fields.Integer()
    balance = fields.Integer(metadata={"description": "可用积分: points the household can spend now"})
    score = fields.Integer(metadata={"description": "all-time score: earned minus deducted"})
    stars = fields.Integer()
    members = fields.List(fields.Dict(), metadata={"description": "name and relation; only in the detail view"})


class HouseholdListSchema(Schema):
    items = fields.List(fields.Nested(HouseholdSchema))
    next = fields.String(allow_none=True)


class TransferLineSchema(Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "award, deduction, redemption, reversal, …"})
    amount = fields.Integer(metadata={"description": "signed from the household's side: + earned, − spent"})
    created_at = fields.DateTime()
    reason = fields.String(allow_none=True)
    award_id = fields.Integer(allow_none=True)
    reverses_id = fields.Integer(allow_none=True)
    reversed = fields.Boolean(metadata={"description": "a later transfer reverses this one"})


class TransferListSchema(Schema):
    items = fields.List(fields.Nested(TransferLineSchema))
    next = fields.String(allow_none=True)


class VillageSchema(Schema):
    code = fields.String()
    name = fields.String()
    town = fields.String()
    hamlets = fields.List(fields.Dict())
    notice_days = fields.Integer()
    code_ttl_seconds = fields.Integer()
    approval_threshold = fields.Integer()
    star_thresholds = fields.List(fields.Integer())


class MeSchema(Schema):
    user = fields.Nested(UserBriefSchema)
    phone = fields.String()
    roles = fields.List(fields.String())
    village = fields.String(allow_none=True, metadata={"description": "the staff member's village code"})
    household = fields.Nested(HouseholdSchema, allow_none=True)
    store = fields.Dict(allow_none=True)


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    before = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))
    after = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0))
