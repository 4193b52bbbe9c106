"""API resources of the foundation: tokens, me, villages, households and their ledger lines."""
from __future__ import annotations

from functools import wraps

from flask import g, jsonify, request
from flask_babel import gettext as _

from ..database import reads_before_write
from ..errors import DomainError, NotFound
from ..extensions import db
from ..people import access, villages
from ..people.auth import authenticate, issue_token, revoke_token, user_from_bearer
from ..people.auth import change_password as auth_change_password
from ..people.models import Area
from ..rankings.households import household_and_summary, household_page, household_summary, transfer_history
from ..pagination import page_body
from ..people.service import village_by_code
from ..stores.models import Store
from . import bp
from . import schemas as s
from .openapi import doc


#: schemas of the hot reads, built once (an instance per request deep-copies its fields)
_ME, _HOUSEHOLD = s.MeSchema(), s.HouseholdSchema()


@bp.url_value_preprocessor
def ids_within_columns(endpoint, values):
    """An id in the path past the id columns' INTEGER finds nothing: 404 before any query (on
    PostgreSQL the query itself would fail). The app's ``<int:>`` converter stops there too; this
    guard keeps the API safe should a route use another converter."""
    if any(isinstance(value, int) and value > s.ID_MAX for value in (values or {}).values()):
        raise NotFound(_("找不到"))


class Unauthorized(DomainError):
    code, status = "unauthorized", 401


def token_required(view):
    """The request must carry a valid bearer token; its user is ``g.api_user``."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            reads_before_write()
        user, token = user_from_bearer()
        if user is None:
            raise Unauthorized(_("请先登录：缺少或无效的令牌"))
        g.api_user, g.api_token = user, token
        return view(*args, **kwargs)
    return wrapper


def load_json(schema):
    """The request body validated by ``schema`` (422 with per-field messages if not)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise DomainError(_("请用 JSON 对象提交"), code="invalid_json", status=400)
    from ..idempotency import check_encodable
    check_encodable(body)
    return schema.load(body)


@bp.post("/auth/tokens")
@doc("Log in with phone and password; returns a bearer token", request=s.TokenRequestSchema,
     response=s.TokenSchema, status=201, errors=(401, 429), public=True)
def create_token():
    data = load_json(s.TokenRequestSchema())
    user = authenticate(data["phone"], data["password"], via="api")
    if user is None:
        raise Unauthorized(_("手机号或密码不对"), code="bad_credentials")
    token, record = issue_token(user)
    body = s.TokenSchema().dump({"token": token, "expires_at": record.expires_at,
                                 "user": {"id": user.id, "name": user.name, "roles": user.roles}})
    return jsonify(body), 201


@bp.delete("/auth/tokens/current")
@token_required
@doc("Revoke the token of this request (log out)", status=204)
def delete_token():
    revoke_token(g.api_token)
    return "", 204


@bp.post("/auth/password")
@token_required
@doc("Change your password: every session and token of the account ends, this one included; the answer "
     "carries a fresh token", request=s.PasswordChangeSchema, response=s.TokenSchema, errors=(422, 429))
def change_password():
    data = load_json(s.PasswordChangeSchema())
    user = g.api_user
    auth_change_password(user, data["current_password"], data["new_password"], via="api")
    token, record = issue_token(user)
    return jsonify(s.TokenSchema().dump({"token": token, "expires_at": record.expires_at,
                                         "user": {"id": user.id, "name": user.name, "roles": user.roles}}))


@bp.get("/me")
@token_required
@doc("The logged-in user, roles, and their household, store or village", response=s.MeSchema)
def me():
    user = g.api_user
    household = access.own_household(user)
    store_id = access.clerk_store_id(user)
    store = db.session.get(Store, store_id) if store_id else None
    staff_village = access.first_village(user, ("committee", "grid", "admin", "supervisor"))
    body = {
        "user": {"id": user.id, "name": user.name, "roles": user.roles},
        "phone": user.phone,
        "roles": user.roles,
        "village": staff_village.code if staff_village else None,
        "household": household_summary(household) if household else None,
        "store": {"id": store.id, "name": store.name} if store else None,
    }
    if user.has_role("supervisor"):
        body["villages"] = [village.code for village in access.villages_visible(user)]
    return jsonify(_ME.dump(body))


def _village_for_staff(code: str) -> Area:
    village = village_by_code(code)
    access.require(access.is_staff(g.api_user, village), _("只有本村工作人员可以查看"))
    return village


@bp.get("/villages/<code>")
@token_required
@doc("A village's settings (staff of the village)", response=s.VillageSchema, errors=(403, 404))
def get_village(code):
    village = _village_for_staff(code)
    return jsonify(s.VillageSchema().dump(villages.settings_of(village)))


@bp.get("/villages/<code>/households")
@token_required
@doc("Households of the village with balance and score (staff; grid managers see their hamlets)",
     response=s.HouseholdListSchema, errors=(403, 404), query=s.PageArgsSchema)
def list_households(code):
    village = _village_for_staff(code)
    args = s.PageArgsSchema().load(request.args)
    items, cursor = household_page(village, hamlet_ids=access.hamlet_scope(g.api_user, village),
                                   after=args["after"], limit=args["limit"])
    return jsonify(page_body(s.HouseholdSchema(many=True).dump(items), cursor))


@bp.get("/households/<int:household_id>")
@token_required
@doc("One household: balance, score, stars, members (committee, supervisor, the grid manager of its hamlet, "
     "or its own members)",
     response=s.HouseholdSchema, errors=(404,))
def get_household(household_id):
    # The household and its summary in one query, then who may read it (not-found and not-yours look alike).
    household, summary = household_and_summary(household_id)
    if household is None or not access.can_read_household(g.api_user, household):
        raise NotFound(_("找不到这户"))
    return jsonify(_HOUSEHOLD.dump(summary))


@bp.get("/households/<int:household_id>/transfers")
@token_required
@doc("Ledger lines of a household, newest first; pass next as before= for the following page",
     response=s.TransferListSchema, errors=(404,), query=s.PageArgsSchema)
def household_transfers(household_id):
    household = access.readable_household(g.api_user, household_id)
    args = s.PageArgsSchema().load(request.args)
    lines, cursor = transfer_history(household, before=args["before"], limit=args["limit"])
    return jsonify(page_body(s.TransferLineSchema(many=True).dump(lines), cursor))
