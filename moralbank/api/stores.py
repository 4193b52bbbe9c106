"""API resources of the shops: payment codes and their QR, items, previews, redemptions,
statements, settlements and paper cards."""
from __future__ import annotations

from flask import Response, g, jsonify, request
from flask_babel import gettext as _
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from .. import periods, throttle
from ..database import keep_loaded, write_transaction
from ..errors import NotFound
from ..extensions import db
from ..idempotency import idempotent_api
from ..pagination import keyset_page, page_body
from ..people import access
from ..people.models import Area, Household
from ..stores import service as stores
from ..stores.models import Item, Redemption, Store
from ..stores.qr import qr_png, qr_svg
from . import bp
from .openapi import doc
from .resources import load_json, token_required
from .schemas import ID_MAX, MONTH_PATTERN, StrictBoolean, StrictInteger, WholeRegexp


class CodeSchema(Schema):
    code = fields.String(metadata={"description": "8-digit number the clerk can type"})
    token = fields.String(metadata={"description": "what the QR carries inside url"})
    url = fields.String(metadata={"description": "the store redeem page with the token"})
    expires_at = fields.DateTime()
    ttl_seconds = fields.Integer()


class ItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    unit = fields.String(load_default="件", validate=validate.Length(max=8))
    points = StrictInteger(required=True, validate=validate.Range(min=1, max=100000))
    stock = StrictInteger(required=True, validate=validate.Range(min=0, max=1000000))
    active = fields.Boolean(dump_only=True)


class ItemPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    unit = fields.String(validate=validate.Length(max=8))
    points = StrictInteger(validate=validate.Range(min=1, max=100000))
    stock = StrictInteger(validate=validate.Range(min=0, max=1000000))
    active = StrictBoolean()


class ItemListSchema(Schema):
    items = fields.List(fields.Nested(ItemSchema))
    next = fields.String(allow_none=True)


class CodeRequestSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the short number or the token"})


class PreviewSchema(Schema):
    household_id = fields.Integer()
    label = fields.String(metadata={"description": "masked head name and household number"})
    balance = fields.Integer(metadata={"description": "points available to spend"})
    expires_at = fields.DateTime()


class CartLineSchema(Schema):
    item_id = StrictInteger(required=True, validate=validate.Range(min=1, max=ID_MAX))
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=1000))


class RedemptionRequestSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    items = fields.List(fields.Nested(CartLineSchema), load_default=list, validate=validate.Length(max=50))
    points = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(min=1, max=1000000))


class RedemptionSchema(Schema):
    id = fields.Integer()
    household_id = fields.Integer()
    store_id = fields.Integer()
    points = fields.Integer()
    balance_after = fields.Integer()
    created_at = fields.DateTime()
    lines = fields.List(fields.Dict())


class RedemptionListArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    before = fields.Integer(load_default=None, validate=validate.Range(min=1, max=ID_MAX))


class RedemptionListSchema(Schema):
    items = fields.List(fields.Nested(RedemptionSchema))
    next = fields.String(allow_none=True, metadata={"description": "pass as before= for the following page"})


class StatementSchema(Schema):
    store = fields.Dict()
    period = fields.String()
    redemptions = fields.List(fields.Dict())
    gross = fields.Integer()
    reversed = fields.Integer()
    points = fields.Integer(metadata={"description": "net points owed"})
    amount_fen = fields.Integer(metadata={"description": "money owed at the village's rate, in fen"})
    settlement = fields.Dict(allow_none=True)


class PeriodSchema(Schema):
    period = fields.String(required=True, validate=WholeRegexp(MONTH_PATTERN), metadata={"description": "2026-11"})


class StatementArgsSchema(Schema):
    period = fields.String(load_default=None, validate=WholeRegexp(MONTH_PATTERN),
                           metadata={"description": "2026-11; this month when absent"})


class SettlementSchema(Schema):
    id = fields.Integer()
    store_id = fields.Integer()
    period = fields.String()
    points = fields.Integer()
    amount_fen = fields.Integer()
    created_at = fields.DateTime()


class CardRequestSchema(Schema):
    pin = fields.String(required=True, validate=WholeRegexp(r"^[0-9]{4,8}$"), load_only=True)


class CardSchema(Schema):
    id = fields.Integer()
    household_id = fields.Integer()
    token = fields.String()
    url = fields.String()


class CardUnlockSchema(Schema):
    card = fields.String(required=True, validate=validate.Length(min=10, max=64),
                         metadata={"description": "the token from the card's QR"})
    pin = fields.String(required=True, validate=validate.Length(min=1, max=8), load_only=True)


#: the redemption's schemas, built once (an instance per request deep-copies its fields)
_REDEMPTION, _REDEMPTION_REQUEST = RedemptionSchema(), RedemptionRequestSchema()


def _store(store_id: int) -> Store:
    return access.get_or_404(Store, store_id, _("找不到这个商店"))


def _code_body(issued: stores.IssuedCode) -> dict:
    record = issued.record
    return CodeSchema().dump({"code": record.code, "token": issued.token, "url": issued.url,
                              "expires_at": record.expires_at,
                              "ttl_seconds": int((record.expires_at - record.created_at).total_seconds())})


def redemption_body(redemption: Redemption) -> dict:
    return _REDEMPTION.dump({
        "id": redemption.id, "household_id": redemption.household_id, "store_id": redemption.store_id,
        "points": redemption.points, "balance_after": stores.balance_after(redemption),
        "created_at": redemption.created_at,
        "lines": [{"item_id": line.item_id, "name": line.name, "quantity": line.quantity,
                   "unit_points": line.unit_points} for line in redemption.lines]})


@bp.post("/redemption-codes")
@token_required
@throttle.code_mint
@doc("A new one-time payment code for the resident's household; it ends the household's earlier open "
     "code. 429 when the household asks too often (CODE_MINT_LIMIT)", response=CodeSchema, status=201,
     errors=(403, 429))
def create_code():
    with write_transaction():
        issued = stores.issue_code(g.api_user)
        body = _code_body(issued)
    return jsonify(body), 201


def _qr_response(code: str, kind: str) -> Response:
    record = stores.drawable_code(g.api_user, code)
    url = stores.IssuedCode.of(record).url
    data, mimetype = (qr_png(url), "image/png") if kind == "png" else (qr_svg(url), "image/svg+xml")
    response = Response(data, mimetype=mimetype)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/redemption-codes/<code>/qr.png")
@token_required
@doc("The QR image (PNG) of one of your household's codes ({code}: the number or the token)", errors=(404,),
     media="image/png")
def code_qr_png(code):
    return _qr_response(code, "png")


@bp.get("/redemption-codes/<code>/qr.svg")
@token_required
@doc("The QR image (SVG) of one of your household's codes ({code}: the number or the token)", errors=(404,),
     media="image/svg+xml")
def code_qr_svg(code):
    return _qr_response(code, "svg")


@bp.get("/stores/<int:store_id>/items")
@token_required
@doc("Items of a store with points price and stock (users of the store's village: residents, staff, clerks; "
     "supervisors above it)", response=ItemListSchema, errors=(403, 404))
def list_items(store_id):
    store = _store(store_id)
    access.require(access.can_read_shelf(g.api_user, store), _("只有本村的人可以查看这个商店"))
    items = db.session.scalars(select(Item).where(Item.store_id == store.id).order_by(Item.id)).all()
    return jsonify({"items": ItemSchema(many=True).dump(items), "next": None})


@bp.post("/stores/<int:store_id>/items")
@token_required
@doc("Put an item on the shelf (committee)", request=ItemSchema, response=ItemSchema, status=201,
     errors=(403, 404))
def create_item(store_id):
    store = _store(store_id)
    data = load_json(ItemSchema())
    with write_transaction():
        item = stores.add_item(store, actor=g.api_user, **data)
        body = ItemSchema().dump(item)
    return jsonify(body), 201


@bp.patch("/items/<int:item_id>")
@token_required
@doc("Change an item (committee), or its stock count (the store's clerk)", request=ItemPatchSchema,
     response=ItemSchema, errors=(403, 404))
def patch_item(item_id):
    item = access.get_or_404(Item, item_id, _("找不到这件商品"))
    data = load_json(ItemPatchSchema())
    with write_transaction():
        stores.update_item(g.api_user, item, **data)
        body = ItemSchema().dump(item)
    return jsonify(body)


@bp.post("/stores/<int:store_id>/redemption-previews")
@token_required
@throttle.code_lookup
@doc("Who the code belongs to (masked) and the points available; changes nothing (clerk of the store)",
     request=CodeRequestSchema, response=PreviewSchema, errors=(403, 404, 409, 429))
def preview(store_id):
    store = _store(store_id)
    data = load_json(CodeRequestSchema())
    seen = stores.preview(g.api_user, store, data["code"])
    return jsonify(PreviewSchema().dump({"household_id": seen.household.id, "label": seen.label,
                                         "balance": seen.balance, "expires_at": seen.code.expires_at}))


@bp.post("/stores/<int:store_id>/redemptions")
@token_required
@throttle.code_lookup
@doc("Redeem: consume the code, take stock, debit the household, credit the store, all at once "
     "(clerk of the store). 409 code_used/code_expired/code_replaced; 422 insufficient_points/out_of_stock; 404 unknown code",
     request=RedemptionRequestSchema, response=RedemptionSchema, status=201, errors=(403, 404, 409, 429),
     idempotent=True)
@idempotent_api(required=True, prepare=lambda store_id: _redemption_found(store_id))
def redeem(store_id, prepared):
    data, found = prepared
    if found.store is None:
        raise NotFound(_("找不到这个商店"))
    redemption = stores.redeem_with_code(g.api_user, found.store, data["code"],
                                         items=[(line["item_id"], line["quantity"]) for line in data["items"]],
                                         points=data["points"], found=found)
    return redemption_body(redemption), 201


def _redemption_found(store_id: int):
    """The request's body and what the redemption acts on, read before the write transaction."""
    data = load_json(_REDEMPTION_REQUEST)
    found = stores.find_for_redemption(store_id, data["code"], [line["item_id"] for line in data["items"]])
    # Not expired when the read ends and the write begins: the write checks again what it relies on.
    keep_loaded(*(obj for obj in (found.store, found.store_account, found.code, found.household,
                                  found.household_account, *found.items.values()) if obj is not None))
    return data, found


@bp.get("/stores/<int:store_id>/redemptions")
@token_required
@doc("The store's redemptions, newest first (clerk of the store, committee)", response=RedemptionListSchema,
     errors=(403, 404), query=RedemptionListArgsSchema)
def list_redemptions(store_id):
    store = _store(store_id)
    village = db.session.get(Area, store.village_id)
    access.require(stores.is_clerk_of(g.api_user, store) or access.is_committee(g.api_user, village))
    args = RedemptionListArgsSchema().load(request.args)
    page = keyset_page(select(Redemption).where(Redemption.store_id == store.id), Redemption.id,
                       limit=args["limit"], cursor=args["before"])
    return jsonify(page_body([redemption_body(r) for r in page.items], page.next))


def _statement_body(statement: stores.Statement) -> dict:
    settlement = statement.settlement
    return StatementSchema().dump({
        "store": {"id": statement.store.id, "name": statement.store.name}, "period": statement.period,
        "redemptions": [dict(r, created_at=r["created_at"].isoformat()) for r in statement.redemptions],
        "gross": statement.gross, "reversed": statement.reversed, "points": statement.points,
        "amount_fen": statement.fen,
        "settlement": SettlementSchema().dump(settlement) if settlement else None})


@bp.get("/stores/<int:store_id>/statement")
@token_required
@doc("Redemptions and the amount owed for a month ?period=2026-11 (clerk of the store, committee)",
     response=StatementSchema, errors=(403, 404), query=StatementArgsSchema)
def get_statement(store_id):
    store = _store(store_id)
    period = StatementArgsSchema().load(request.args)["period"] or periods.current_month()
    return jsonify(_statement_body(stores.statement(g.api_user, store, period)))


@bp.post("/stores/<int:store_id>/settlements")
@token_required
@doc("Record the settlement of a month (committee); a second one for the month is 409",
     request=PeriodSchema, response=SettlementSchema, status=201, errors=(403, 404, 409), idempotent=True)
@idempotent_api(required=True)
def create_settlement(store_id):
    store = _store(store_id)
    data = load_json(PeriodSchema())
    settlement = stores.settle(g.api_user, store, data["period"])
    return SettlementSchema().dump(settlement), 201


@bp.post("/households/<int:household_id>/cards")
@token_required
@doc("Issue a paper card with a long-lived QR and a PIN (committee); earlier cards stop working",
     request=CardRequestSchema, response=CardSchema, status=201, errors=(403, 404))
def issue_card(household_id):
    household = access.get_or_404(Household, household_id, _("找不到这户"))
    data = load_json(CardRequestSchema())
    from ..edge import public_url
    with write_transaction():
        card, token = stores.issue_card(g.api_user, household, data["pin"])
        body = CardSchema().dump({"id": card.id, "household_id": household.id, "token": token,
                                  "url": public_url("shop.card_page", t=token)})
    return jsonify(body), 201


@bp.delete("/households/<int:household_id>/cards")
@token_required
@doc("Revoke the household's cards (committee)", status=204, errors=(403, 404))
def revoke_cards(household_id):
    household = access.get_or_404(Household, household_id, _("找不到这户"))
    with write_transaction():
        stores.revoke_card(g.api_user, household)
    return "", 204


@bp.post("/stores/<int:store_id>/card-unlocks")
@token_required
@throttle.card_pin
@doc("A paper card's QR token and the household's PIN give a one-time code for this store (clerk)",
     request=CardUnlockSchema, response=CodeSchema, status=201, errors=(403, 404, 409, 429))
def unlock_card(store_id):
    store = _store(store_id)
    data = load_json(CardUnlockSchema())
    issued = stores.unlock_card(g.api_user, store, data["card"], data["pin"])
    return jsonify(_code_body(issued)), 201
