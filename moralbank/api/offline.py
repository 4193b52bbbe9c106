"""API of offline vouchers: the village's public key, issuing a voucher (a hold), and a shop's
batch of sales taken offline."""
from __future__ import annotations

from flask import g, jsonify
from flask_babel import gettext as _
from marshmallow import Schema, fields, validate

from .. import throttle
from ..database import write_transaction
from ..idempotency import idempotent_api
from ..people import access
from ..people.service import village_by_code
from ..stores import offline, offline_keys
from ..stores.models import Store
from . import bp
from .openapi import doc
from .resources import load_json, token_required
from .schemas import ID_MAX, StrictInteger


class OfflineKeySchema(Schema):
    alg = fields.String(metadata={"description": "ES256: ECDSA P-256 with SHA-256"})
    public_key = fields.Dict(metadata={"description": "the public key as a JWK (kty, crv, x, y)"})
    pem = fields.String(metadata={"description": "the same key as PEM (SubjectPublicKeyInfo)"})


class VoucherRequestSchema(Schema):
    points = StrictInteger(required=True, validate=validate.Range(min=1, max=offline.MAX_VOUCHER_POINTS))
    household_id = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(min=1, max=ID_MAX),
                                 metadata={"description": "committee only: the household to issue for"})


class VoucherSchema(Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "8 digits a clerk can type"})
    token = fields.String(metadata={"description": "the signed voucher (MB1.payload.signature) the QR carries"})
    url = fields.String(metadata={"description": "the shop's offline page with the token in the fragment"})
    points = fields.Integer(metadata={"description": "the most the shop may take"})
    store_id = fields.Integer()
    household_id = fields.Integer()
    expires_at = fields.DateTime()


class SaleLineSchema(Schema):
    item_id = StrictInteger(required=True, validate=validate.Range(min=1, max=ID_MAX))
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=1000))


class SaleSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=offline_keys.MAX_TOKEN),
                          metadata={"description": "the voucher's token, or its 8-digit number"})
    points = StrictInteger(required=True, validate=validate.Range(min=1, max=offline.MAX_VOUCHER_POINTS))
    items = fields.List(fields.Nested(SaleLineSchema), load_default=list, validate=validate.Length(max=50))
    taken_at = fields.AwareDateTime(required=True, metadata={"description": "when the shop took it (ISO 8601 "
                                                                            "with offset)"})


class SalesRequestSchema(Schema):
    sales = fields.List(fields.Nested(SaleSchema), required=True, validate=validate.Length(min=1, max=200))


class SaleResultSchema(Schema):
    voucher_id = fields.Integer(allow_none=True)
    status = fields.String(metadata={"description": " | ".join(offline.SALE_STATUSES)})
    redemption_id = fields.Integer()


class SalesResultSchema(Schema):
    results = fields.List(fields.Nested(SaleResultSchema))


class ConflictSchema(Schema):
    id = fields.Integer()
    voucher_id = fields.Integer()
    store_id = fields.Integer()
    clerk_id = fields.Integer(allow_none=True)
    points = fields.Integer()
    items = fields.List(fields.List(fields.Integer()), allow_none=True)
    taken_at = fields.DateTime(allow_none=True)
    received_at = fields.DateTime()


class ConflictListSchema(Schema):
    items = fields.List(fields.Nested(ConflictSchema))
    next = fields.String(allow_none=True)


def voucher_body(issued: offline.IssuedVoucher) -> dict:
    voucher = issued.voucher
    return VoucherSchema().dump({"id": voucher.id, "code": voucher.code, "token": issued.token, "url": issued.url,
                                 "points": voucher.points, "store_id": voucher.store_id,
                                 "household_id": voucher.household_id, "expires_at": voucher.expires_at})


@bp.get("/villages/<code>/offline-key")
@token_required
@doc("The village's public key that verifies its offline vouchers (any user)", response=OfflineKeySchema,
     errors=(404,))
def offline_key(code):
    village = village_by_code(code)
    with write_transaction():
        key = offline_keys.village_key(village.id)
        body = OfflineKeySchema().dump({"alg": key.alg, "public_key": offline_keys.public_jwk(key),
                                        "pem": offline_keys.public_pem(key)})
    return jsonify(body)


@bp.post("/stores/<int:store_id>/offline-vouchers")
@token_required
@doc("Hold points for this store in an offline voucher (a resident for their household; the committee with "
     "household_id): the household's balance drops and held rises by points. 422 insufficient_points, "
     "voucher_limit", request=VoucherRequestSchema, response=VoucherSchema, status=201, errors=(403, 404),
     idempotent=True)
@idempotent_api(required=True)
def issue_voucher(store_id):
    store = access.get_or_404(Store, store_id, _("找不到这个商店"))
    data = load_json(VoucherRequestSchema())
    issued = offline.issue_voucher(g.api_user, store, data["points"], household_id=data["household_id"])
    return voucher_body(issued), 201


@bp.post("/stores/<int:store_id>/offline-sales")
@token_required
@throttle.code_lookup
@doc("Sync sales a shop took offline (clerk of the store). Each result's status: posted (the hold paid the "
     "points, the rest returned), replay (this sale was synced before), voucher_used (another sale spent the "
     "voucher: listed for the committee), expired, wrong_store, bad_signature, over_limit",
     request=SalesRequestSchema, response=SalesResultSchema, errors=(403, 404, 409, 429), idempotent=True)
@idempotent_api(required=True)
def offline_sales(store_id):
    store = access.get_or_404(Store, store_id, _("找不到这个商店"))
    data = load_json(SalesRequestSchema())
    results = offline.sync_sales(g.api_user, store, data["sales"])
    return SalesResultSchema().dump({"results": results}), 200


@bp.get("/villages/<code>/offline-conflicts")
@token_required
@doc("Second, different sales of spent offline vouchers, newest first (committee, supervisor)", response=ConflictListSchema,
     errors=(403, 404))
def offline_conflicts(code):
    village = village_by_code(code)
    access.require(access.is_committee(g.api_user, village) or access.is_supervisor(g.api_user, village),
                   _("只有村委会可以查看"))
    rows = offline.conflicts(village)
    return jsonify({"items": ConflictSchema(many=True).dump(rows), "next": None})
