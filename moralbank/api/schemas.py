"""Marshmallow schemas of the API (the OpenAPI document is generated from them)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from ..awards.models import AwardStatus
from ..errors import range_words

#: calendar periods as the document states them (ASCII digits only); their one home is moralbank.periods
from ..periods import MONTH_PATTERN, PERIOD_PATTERN  # noqa: F401 (the API's schemas use them through here)

#: ids and cursors stay within the id columns' INTEGER (PostgreSQL's int4: a larger number in a
#: query is a DataError, not "not found")
ID_MAX = 2**31 - 1


EXPIRY_DESCRIPTION = ('when points lapse: {"mode": "none"} (never), {"mode": "annual", "on": "12-31"} (unspent '
                      'points lapse at the end of that day each year), or {"mode": "months", "months": 24} (each '
                      "award's points lapse that many months after posting, 1-120; spent first-in first-out)")


class Between(validate.Range):
    """An inclusive range whose refusal is said in the pages' words ("要填 1 到 50 的整数"), for the
    numbers people type (the API's error message then names the field by its label)."""

    def _format_error(self, value, message):
        return range_words(self.min, self.max)


class WholeRegexp(validate.Regexp):
    """A pattern the whole value must match: Python's ``$`` also matches before a final newline,
    so ``"2026-10\n"`` would otherwise pass as a second spelling of October."""

    def __call__(self, value):
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class StrictInteger(fields.Integer):
    """A JSON integer, nothing else: ``1.5`` (which the plain field takes as 1), ``1.0`` and ``"1"`` are
    refused. For request bodies; query strings are text and keep ``fields.Integer``."""

    def __init__(self, **kwargs):
        kwargs["strict"] = True
        super().__init__(**kwargs)


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false``, nothing else: ``0``/``1``, ``"yes"`` and ``"on"`` are refused.

    (``truthy={True}`` alone would not do: ``1 == True`` in Python, so 1 would still pass.)
    For request bodies; query strings keep ``fields.Boolean``.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class MonthArgsSchema(Schema):
    month = fields.String(load_default=None, validate=WholeRegexp(MONTH_PATTERN),
                          metadata={"description": "2026-11; this month when absent"})


def _star_count_error():
    from marshmallow import ValidationError
    raise ValidationError("5 thresholds (stars), or 10 (十星)")


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


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=256), load_only=True)
    new_password = fields.String(required=True, validate=validate.Length(min=1, max=256), load_only=True,
                                 metadata={"description": "at least 8 characters, not common, not the phone"})


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
    held = fields.Integer(metadata={"description": "points held by offline vouchers (not in balance); "
                                                   "only in the detail view"})
    members = fields.List(fields.Dict(), metadata={"description": "name and relation; only in the detail view"})
    veto = fields.Nested("VetoSchema", allow_none=True,
                         metadata={"description": "一票否决: null, or the veto barring stars and honours"})
    expiring = fields.List(fields.Nested(lambda: ExpiringSchema()), metadata={
        "description": "points that will lapse under the village's expiry setting, by day, soonest first (a day "
                       "already past: the next nightly run lapses them); empty when points never lapse"})


class VetoSchema(Schema):
    until = fields.Date(metadata={"description": "last day of the village's veto period (inclusive)"})
    rule_id = fields.Integer()
    award_id = fields.Integer()
    title = fields.String(metadata={"description": "the veto item"})


class ExpiringSchema(Schema):
    points = fields.Integer()
    on = fields.Date(metadata={"description": "the last day these points can be spent"})


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
    rule_changes_need_meeting = fields.Boolean(
        metadata={"description": "new rules, versions and retirements are drafts until a meeting adopts them"})
    veto_period = fields.String(metadata={"description": "month, quarter or year: how long a 一票否决 lasts"})
    veto_blocks_redemption = fields.Boolean(metadata={"description": "a vetoed household cannot spend points"})
    veto_hides_ranking = fields.Boolean(metadata={"description": "a vetoed household is left out of the ranking"})
    expiry = fields.Dict(metadata={"description": EXPIRY_DESCRIPTION})


class MeSchema(Schema):
    user = fields.Nested(UserBriefSchema)
    phone = fields.String()
    roles = fields.List(fields.String())
    village = fields.String(allow_none=True, metadata={"description": "the staff member's village code"})
    household = fields.Nested(HouseholdSchema, allow_none=True)
    store = fields.Dict(allow_none=True)
    villages = fields.List(fields.String(), metadata={"description": "a supervisor's villages (codes); only then"})


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    before = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=ID_MAX))
    after = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0, max=ID_MAX))


class RuleSchema(Schema):
    id = fields.Integer(dump_only=True)
    category = fields.String(required=True, validate=validate.OneOf(
        ["hygiene", "custom", "volunteer", "elders", "law", "enterprise", "deduction"]))
    category_label = fields.String(dump_only=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=64))
    points = StrictInteger(required=True, validate=Between(min=-1000, max=1000),
                           metadata={"description": "per unit, not 0; negative for deductions"})
    cap = fields.Method("dump_cap", "load_cap", allow_none=True, load_default=None,
                        metadata={"description": "{count, period: month|quarter|year} or null"})
    photo_required = StrictBoolean(load_default=False)
    version = fields.Integer(dump_only=True)
    family_id = fields.Integer(dump_only=True)
    active = fields.Boolean(dump_only=True)
    veto = StrictBoolean(load_default=False, metadata={"description": "一票否决 item (deductions only)"})
    status = fields.String(dump_only=True, metadata={"description": "draft, in_force or retired"})
    adopted_by = fields.Integer(dump_only=True, allow_none=True, attribute="adopted_by_id",
                                metadata={"description": "id of the meeting that adopted this version, or null"})
    change = fields.Method("dump_change", dump_only=True,
                           metadata={"description": "what this version does: new, revision or retirement"})

    def dump_change(self, rule):
        from ..awards.rules import draft_change
        return draft_change(rule)

    def dump_cap(self, rule):
        if rule is None or not getattr(rule, "cap_count", None):
            return None
        return {"count": rule.cap_count, "period": rule.cap_period}

    def load_cap(self, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            from marshmallow import ValidationError
            raise ValidationError("cap must be {count, period} or null")
        return CapSchema().load(value)


class CapSchema(Schema):
    count = StrictInteger(required=True, validate=Between(min=1, max=100))
    period = fields.String(required=True, validate=validate.OneOf(["month", "quarter", "year"]))


class RulePatchSchema(Schema):
    category = fields.String(validate=validate.OneOf(
        ["hygiene", "custom", "volunteer", "elders", "law", "enterprise", "deduction"]))
    title = fields.String(validate=validate.Length(min=1, max=64))
    points = StrictInteger(validate=Between(min=-1000, max=1000))
    cap = fields.Raw(allow_none=True)
    photo_required = StrictBoolean()
    veto = StrictBoolean()
    active = StrictBoolean(metadata={"description": "false retires the rule (a draft retirement when the "
                                                    "village's changes need a meeting)"})


class RuleListArgsSchema(Schema):
    all = fields.Boolean(load_default=False, metadata={"description": "1: include retired and old versions"})
    status = fields.String(load_default=None, validate=validate.OneOf(["draft", "in_force", "retired"]),
                           metadata={"description": "only the rules of this status"})


class RuleListSchema(Schema):
    items = fields.List(fields.Nested(RuleSchema))
    next = fields.String(allow_none=True)


class AwardCreateSchema(Schema):
    household_id = StrictInteger(required=True, validate=validate.Range(min=1, max=ID_MAX))
    rule_id = StrictInteger(required=True, validate=validate.Range(min=1, max=ID_MAX))
    quantity = StrictInteger(load_default=1, validate=Between(min=1, max=50))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    occurred_on = fields.Date(load_default=None, allow_none=True)


class AwardFormSchema(AwardCreateSchema):
    """The same proposal sent as multipart/form-data (with a photo): there every value is text, so
    the numbers are read from their digits ("1.5" is still refused)."""

    household_id = fields.Integer(required=True, validate=validate.Range(min=1, max=ID_MAX))
    rule_id = fields.Integer(required=True, validate=validate.Range(min=1, max=ID_MAX))
    quantity = fields.Integer(load_default=1, validate=Between(min=1, max=50))


class ReviewBatchSchema(Schema):
    award_ids = fields.List(StrictInteger(validate=validate.Range(min=1, max=2**31 - 1)), required=True,
                            validate=validate.Length(min=1, max=200))
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    reason = fields.String(load_default="", validate=validate.Length(max=255))


class ReviewRefusalSchema(Schema):
    award_id = fields.Integer()
    code = fields.String()
    message = fields.String()


class ReviewOutcomeSchema(Schema):
    decided = fields.List(fields.Nested(lambda: AwardSchema()))
    refused = fields.List(fields.Nested(ReviewRefusalSchema))


class ReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))


class AwardSchema(Schema):
    id = fields.Integer()
    status = fields.String(metadata={"description": "proposed, approved, disputed, posted, rejected"})
    status_label = fields.String()
    household_id = fields.Integer()
    rule_id = fields.Integer()
    rule = fields.Dict()
    points = fields.Integer(metadata={"description": "signed points this award moves"})
    quantity = fields.Integer()
    note = fields.String(allow_none=True)
    occurred_on = fields.Date()
    proposed_by_id = fields.Integer(allow_none=True)
    proposed_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)
    notice_ends_at = fields.DateTime(allow_none=True)
    posted_at = fields.DateTime(allow_none=True)
    decision_reason = fields.String(allow_none=True)
    has_photo = fields.Boolean()
    transfer_id = fields.Integer(allow_none=True, metadata={"description": "the posting transfer, once posted"})
    reversed = fields.Boolean()


class AwardListSchema(Schema):
    items = fields.List(fields.Nested(AwardSchema))
    next = fields.String(allow_none=True)


class AwardListArgsSchema(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf([status.value for status in AwardStatus]))
    household_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=ID_MAX))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    before = fields.Integer(load_default=None, validate=validate.Range(min=1, max=ID_MAX))


class TransferSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    amount = fields.Integer()
    debit_account_id = fields.Integer()
    credit_account_id = fields.Integer()
    reverses_id = fields.Integer(allow_none=True)
    award_id = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class VillagePatchSchema(Schema):
    notice_days = StrictInteger(validate=Between(min=0, max=30))
    code_ttl_seconds = StrictInteger(validate=Between(min=30, max=3600))
    approval_threshold = StrictInteger(validate=Between(min=0, max=10000))
    star_thresholds = fields.List(StrictInteger(validate=validate.Range(min=1, max=1_000_000)),
                                  validate=lambda v: len(v) in (5, 10) or _star_count_error(),
                                  metadata={"description": "ascending: 5 thresholds, or 10 for 十星"})
    rule_changes_need_meeting = StrictBoolean()
    veto_period = fields.String(validate=validate.OneOf(["month", "quarter", "year"]))
    veto_blocks_redemption = StrictBoolean()
    veto_hides_ranking = StrictBoolean()
    expiry = fields.Dict(metadata={"description": EXPIRY_DESCRIPTION})


class MeetingCreateSchema(Schema):
    held_on = fields.Date(required=True, metadata={"description": "the local date it was held"})
    kind = fields.String(required=True, validate=validate.OneOf(["assembly", "representatives"]),
                         metadata={"description": "assembly 村民会议 or representatives 村民代表会议"})
    entitled = StrictInteger(required=True, validate=validate.Range(min=1, max=100_000))
    present = StrictInteger(required=True, validate=validate.Range(min=0, max=100_000))
    votes_for = StrictInteger(required=True, validate=validate.Range(min=0, max=100_000))
    votes_against = StrictInteger(required=True, validate=validate.Range(min=0, max=100_000))
    votes_abstain = StrictInteger(required=True, validate=validate.Range(min=0, max=100_000))
    adopts = fields.List(StrictInteger(validate=validate.Range(min=1, max=ID_MAX)), required=True,
                         validate=validate.Length(min=1, max=200), metadata={"description": "ids of draft rules"})


class MeetingFormSchema(MeetingCreateSchema):
    """The same fields as multipart/form-data (with a ``minutes`` file): numbers arrive as text."""
    entitled = fields.Integer(required=True, validate=validate.Range(min=1, max=100_000))
    present = fields.Integer(required=True, validate=validate.Range(min=0, max=100_000))
    votes_for = fields.Integer(required=True, validate=validate.Range(min=0, max=100_000))
    votes_against = fields.Integer(required=True, validate=validate.Range(min=0, max=100_000))
    votes_abstain = fields.Integer(required=True, validate=validate.Range(min=0, max=100_000))
    adopts = fields.List(fields.Integer(validate=validate.Range(min=1, max=ID_MAX)), required=True,
                         validate=validate.Length(min=1, max=200))


class AdoptedRuleSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    version = fields.Integer()
    status = fields.String()
    change = fields.String(metadata={"description": "new, revision or retirement"})


class MeetingSchema(Schema):
    id = fields.Integer()
    held_on = fields.Date()
    kind = fields.String()
    kind_label = fields.String()
    entitled = fields.Integer()
    present = fields.Integer()
    votes_for = fields.Integer()
    votes_against = fields.Integer()
    votes_abstain = fields.Integer()
    has_minutes = fields.Boolean()
    line = fields.String(metadata={"description": "as the board shows it: 2026-03-12 村民代表会议 41 票赞成 2 票反对"})
    adopted = fields.List(fields.Nested(AdoptedRuleSchema))
    created_at = fields.DateTime()


class MeetingListSchema(Schema):
    items = fields.List(fields.Nested(MeetingSchema))
    next = fields.String(allow_none=True)
