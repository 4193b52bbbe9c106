"""API resources of the award life cycle: rules, awards, decisions, objections, reversals."""
from __future__ import annotations

from flask import g, jsonify, request
from flask_babel import gettext as _
from sqlalchemy import select

from ..awards import service as awards
from ..awards.models import Award, AwardStatus, Rule, RuleStatus
from ..database import write_transaction
from ..errors import Invalid
from ..extensions import db
from ..idempotency import idempotent_api
from ..pagination import keyset_page, page_body
from ..ledger.service import request_key
from ..people import access, villages
from ..people.models import Area, Household
from ..people.service import village_by_code
from . import bp
from . import schemas as s
from .openapi import doc
from .resources import load_json, token_required


def rule_body(rule: Rule) -> dict:
    return s.RuleSchema().dump(rule)


#: built once (an instance per request deep-copies its fields)
_AWARD = s.AwardSchema()


def award_body(award: Award) -> dict:
    rule = db.session.get(Rule, award.rule_id)
    transfer = awards.award_transfer(award) if award.status == AwardStatus.POSTED else None
    return _AWARD.dump({
        "id": award.id, "status": award.status, "status_label": awards.status_label(award.status),
        "household_id": award.household_id, "rule_id": award.rule_id,
        "rule": {"title": rule.title, "category": rule.category, "points": rule.points, "version": rule.version},
        "points": award.points, "quantity": award.quantity, "note": award.note, "occurred_on": award.occurred_on,
        "proposed_by_id": award.proposed_by_id, "proposed_at": award.proposed_at, "decided_at": award.decided_at,
        "notice_ends_at": award.notice_ends_at, "posted_at": award.posted_at,
        "decision_reason": award.decision_reason, "has_photo": bool(award.photo_path),
        "transfer_id": transfer.id if transfer else None, "reversed": awards.is_reversed(transfer),
    })


# --- villages --------------------------------------------------------------------------------

@bp.patch("/villages/<code>")
@token_required
@doc("Change a village's settings (committee)", request=s.VillagePatchSchema, response=s.VillageSchema,
     errors=(403, 404))
def patch_village(code):
    village = village_by_code(code)
    access.require(access.is_committee(g.api_user, village), _("只有村委会可以修改本村设置"))
    changes = load_json(s.VillagePatchSchema())
    with write_transaction():
        villages.change_settings(g.api_user, village, changes)
    return jsonify(s.VillageSchema().dump(villages.settings_of(village)))


# --- rules -----------------------------------------------------------------------------------

@bp.get("/villages/<code>/rules")
@token_required
@doc("The village's rule catalogue: the items in force; ?status=draft the drafts waiting for a meeting; "
     "?all=1 every version", response=s.RuleListSchema,
     errors=(404,), query=s.RuleListArgsSchema)
def list_rules(code):
    village = village_by_code(code)  # any logged-in user may read a catalogue
    args = s.RuleListArgsSchema().load(request.args)
    query = select(Rule).where(Rule.village_id == village.id)
    if args["status"]:
        query = query.where(Rule.status == args["status"])
    elif not args["all"]:
        query = query.where(Rule.active.is_(True))
    rules = db.session.scalars(query.order_by(Rule.category, Rule.id)).all()
    return jsonify({"items": [rule_body(rule) for rule in rules], "next": None})


@bp.post("/villages/<code>/rules")
@token_required
@doc("Add a rule to the catalogue (committee); a draft (status draft) when the village's rule changes need "
     "a meeting", request=s.RuleSchema, response=s.RuleSchema, status=201,
     errors=(403, 404))
def create_rule(code):
    village = village_by_code(code)
    access.require(access.is_committee(g.api_user, village), _("只有村委会可以修改积分清单"))
    data = load_json(s.RuleSchema())
    cap = data.get("cap") or {}
    with write_transaction():
        rule = awards.create_rule(village, category=data["category"], title=data["title"], points=data["points"],
                                  cap_count=cap.get("count"), cap_period=cap.get("period"),
                                  photo_required=data["photo_required"], veto=data["veto"], actor=g.api_user)
    return jsonify(rule_body(rule)), 201


@bp.patch("/rules/<int:rule_id>")
@token_required
@doc("Edit a rule: makes a new version (201 with it); {active: false} retires it (200) (committee)",
     request=s.RulePatchSchema, response=s.RuleSchema, status=(200, 201), errors=(403, 404, 409))
def patch_rule(rule_id):
    rule = access.get_or_404(Rule, rule_id, _("找不到这一项"))
    village = db.session.get(Area, rule.village_id)
    access.require(access.is_committee(g.api_user, village), _("只有村委会可以修改积分清单"))
    data = load_json(s.RulePatchSchema())
    if not data:
        raise Invalid(_("没有要修改的内容"), code="nothing_to_change")
    with write_transaction():
        if data.get("active") is False:
            return jsonify(rule_body(awards.retire_rule(rule, actor=g.api_user)))
        changes = {key: value for key, value in data.items() if key not in ("cap", "active")}
        if "cap" in data:
            cap = s.RuleSchema().load_cap(data["cap"])
            changes["cap_count"], changes["cap_period"] = (cap["count"], cap["period"]) if cap else (None, None)
        revised = awards.revise_rule(rule, actor=g.api_user, **changes)
    return jsonify(rule_body(revised)), 201


# --- awards ----------------------------------------------------------------------------------

def _proposal_from_request() -> awards.Proposal:
    if request.mimetype == "multipart/form-data":
        data = s.AwardFormSchema().load({key: value for key, value in request.form.items()})
        upload = request.files.get("photo")
        photo = upload.read() if upload else None
    else:
        data = load_json(s.AwardCreateSchema())
        photo = None
    return awards.Proposal(household_id=data["household_id"], rule_id=data["rule_id"], quantity=data["quantity"],
                           note=data["note"], occurred_on=data["occurred_on"], photo=photo)


@bp.post("/awards")
@token_required
@doc("Propose an award (grid manager, committee) or declare one for your own household (resident). "
     "JSON, or multipart/form-data with a `photo` file", request=s.AwardCreateSchema, response=s.AwardSchema,
     status=201, errors=(403, 404, 409), idempotent=True)
@idempotent_api(required=True)
def create_award():
    proposal = _proposal_from_request()
    award = awards.propose(g.api_user, proposal)
    return award_body(award), 201


@bp.get("/awards/<int:award_id>")
@token_required
@doc("One award (committee, supervisor, the grid manager of its hamlet, or the household's members)",
     response=s.AwardSchema, errors=(404,))
def get_award(award_id):
    return jsonify(award_body(awards.readable_award(g.api_user, award_id)))


@bp.get("/villages/<code>/awards")
@token_required
@doc("Awards of a village, newest first, filtered by status or household (staff)", response=s.AwardListSchema,
     errors=(403, 404), query=s.AwardListArgsSchema)
def list_awards(code):
    village = village_by_code(code)
    access.require(access.is_staff(g.api_user, village), _("只有本村工作人员可以查看"))
    args = s.AwardListArgsSchema().load(request.args)
    query = select(Award).where(Award.village_id == village.id)
    if args["status"]:
        query = query.where(Award.status == args["status"])
    if args["household_id"]:
        query = query.where(Award.household_id == args["household_id"])
    hamlet_ids = access.hamlet_scope(g.api_user, village)
    if hamlet_ids is not None:  # a grid manager reads the awards of their own hamlets only
        query = query.where(Award.household_id.in_(
            select(Household.id).where(Household.village_id == village.id, Household.hamlet_id.in_(hamlet_ids))))
    page = keyset_page(query, Award.id, limit=args["limit"], cursor=args["before"])
    return jsonify(page_body([award_body(award) for award in page.items], page.next))


@bp.post("/awards/<int:award_id>/approve")
@token_required
@doc("Approve (committee): into public notice, or posted at once when notice_days is 0",
     response=s.AwardSchema, errors=(403, 404, 409), idempotent=True)
@idempotent_api(required=True)
def approve_award(award_id):
    return award_body(awards.approve(g.api_user, award_id)), 200


@bp.post("/awards/reviews")
@token_required
@doc("Approve or reject several awards at once (committee): each is decided on its own; the refused "
     "ones are listed with their reason", request=s.ReviewBatchSchema, response=s.ReviewOutcomeSchema,
     errors=(403,), idempotent=True)
@idempotent_api(required=True)
def review_awards():
    data = load_json(s.ReviewBatchSchema())
    outcome = awards.review_batch(g.api_user, data["award_ids"], data["decision"], data["reason"])
    return {"decided": [award_body(db.session.get(Award, award_id)) for award_id in outcome.decided],
            "refused": s.ReviewRefusalSchema(many=True).dump(
                [{"award_id": award_id, "code": error.code, "message": error.message}
                 for award_id, error in outcome.refused])}, 200


@bp.post("/awards/<int:award_id>/reject")
@token_required
@doc("Reject with a reason (committee)", request=s.ReasonSchema, response=s.AwardSchema,
     errors=(403, 404, 409), idempotent="optional")
@idempotent_api(required=False)
def reject_award(award_id):
    data = load_json(s.ReasonSchema())
    return award_body(awards.reject(g.api_user, award_id, data["reason"])), 200


@bp.post("/awards/<int:award_id>/objections")
@token_required
@doc("Object during public notice (residents of the village); the award becomes disputed",
     request=s.ReasonSchema, response=s.AwardSchema, status=201, errors=(403, 404, 409), idempotent="optional")
@idempotent_api(required=False)
def object_award(award_id):
    data = load_json(s.ReasonSchema())
    return award_body(awards.object_to(g.api_user, award_id, data["reason"])), 201


@bp.post("/transfers/<int:transfer_id>/reversal")
@token_required
@doc("Reverse a posted transfer with a reason (committee); 409 if it was already reversed",
     request=s.ReasonSchema, response=s.TransferSchema, status=201, errors=(403, 404, 409), idempotent=True)
@idempotent_api(required=True)
def reverse_transfer(transfer_id):
    data = load_json(s.ReasonSchema())
    key = request.headers["Idempotency-Key"]
    reversal = awards.reverse_transfer(g.api_user, transfer_id, data["reason"],
                                       idempotency_key=request_key("reversal", g.api_user.id, key))
    return s.TransferSchema().dump(reversal), 201
