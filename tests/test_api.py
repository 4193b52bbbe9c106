"""The JSON API base: tokens, /me, households, ledger lines, errors, OpenAPI, throttling, idempotency."""
from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, or_, select

from moralbank.extensions import db
from support import DEMO_PASSWORD, PHONES, redis_down_reason, session_of

ROLES_OF = {"committee": ["committee"], "grid": ["grid"], "resident": ["resident"], "clerk": ["clerk"],
            "supervisor": ["supervisor"], "committee_xlc": ["committee"]}
HOUSEHOLD_FIELDS = {"id", "number", "head", "hamlet", "balance", "score", "stars"}




def assert_envelope(response, status: int, code: str | None = None) -> dict:
    """The response is the JSON error envelope with this status (and code); returns the error body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.is_json, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"].strip()
    assert isinstance(error["fields"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def login(client, phone, password=DEMO_PASSWORD):
    return client.post("/api/v1/auth/tokens", json={"phone": phone, "password": password})


def ids_by_number(app, *numbers) -> list[int]:
    from moralbank.people.models import Household

    with session_of(app) as session:
        rows = dict(session.execute(select(Household.number, Household.id).where(Household.number.in_(numbers))).all())
    return [rows[number] for number in numbers]


def resident_household_id(app) -> int:
    from moralbank.people.models import RoleGrant, User

    with session_of(app) as session:
        return session.scalar(select(RoleGrant.household_id).join(User, User.id == RoleGrant.user_id)
                              .where(User.phone == PHONES["resident"], RoleGrant.role == "resident"))


# --- tokens ---------------------------------------------------------------------------------------------------------

def test_each_demo_login_gets_a_token(client):
    user_ids = set()
    for who, phone in PHONES.items():
        response = login(client, phone)
        assert response.status_code == 201, (who, response.get_json())
        body = response.get_json()
        assert isinstance(body["token"], str) and len(body["token"]) >= 32, who
        expires = datetime.fromisoformat(body["expires_at"])
        assert expires.tzinfo is not None, who
        now = datetime.now(expires.tzinfo)
        assert timedelta(days=29) < expires - now <= timedelta(days=30, minutes=1), who
        assert body["user"]["roles"] == ROLES_OF[who], who
        assert isinstance(body["user"]["id"], int) and body["user"]["name"], who
        assert "password" not in response.get_data(as_text=True)
        user_ids.add(body["user"]["id"])
        # The token works, for this user.
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
        assert me.status_code == 200, who
        assert me.get_json()["user"]["id"] == body["user"]["id"], who
    assert len(user_ids) == 6


def test_two_logins_get_two_different_tokens(client):
    first = login(client, PHONES["resident"]).get_json()["token"]
    second = login(client, PHONES["resident"]).get_json()["token"]
    assert first != second


def test_phone_may_be_written_with_country_code_and_spaces(client):
    response = login(client, "+86 138 0000 0001")
    assert response.status_code == 201
    assert response.get_json()["user"]["roles"] == ["committee"]


def test_wrong_password_is_401_envelope(client):
    error = assert_envelope(login(client, PHONES["committee"], "not-the-password"), 401)
    assert error["fields"] == {}
    assert error["code"] in ("bad_credentials", "unauthorized")


def test_unknown_phone_looks_like_a_wrong_password(client):
    wrong_password = assert_envelope(login(client, PHONES["committee"], "nope-nope-nope"), 401)
    unknown_phone = assert_envelope(login(client, "13999999999", "nope-nope-nope"), 401)
    assert unknown_phone == wrong_password


def test_inactive_user_cannot_log_in_and_their_token_stops_working(app, client):
    from moralbank.people.models import User

    token = login(client, PHONES["grid"]).get_json()["token"]
    with session_of(app) as session:
        session.scalar(select(User).where(User.phone == PHONES["grid"])).active = False
        session.commit()
    assert_envelope(login(client, PHONES["grid"]), 401)
    assert_envelope(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401)


def test_missing_login_fields_are_422_with_fields(client):
    for body, missing in [({}, {"phone", "password"}), ({"phone": PHONES["committee"]}, {"password"}),
                          ({"password": DEMO_PASSWORD}, {"phone"})]:
        error = assert_envelope(client.post("/api/v1/auth/tokens", json=body), 422, "invalid")
        assert set(error["fields"]) == missing, body
        assert all(error["fields"][name] for name in missing)


def test_login_field_of_wrong_type_is_422(client):
    error = assert_envelope(client.post("/api/v1/auth/tokens", json={"phone": 13800000001, "password": 1}), 422)
    assert set(error["fields"]) == {"phone", "password"}


def test_non_json_login_is_400_envelope(client):
    for data, content_type in [
        ("phone=13800000001&password=demo-pass-2026", "application/x-www-form-urlencoded"),
        ("not json at all", "text/plain"),
        ("{broken json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"13800000001"', "application/json"),
    ]:
        response = client.post("/api/v1/auth/tokens", data=data, content_type=content_type)
        assert response.status_code == 400, (data, response.status_code)
        assert_envelope(response, 400)


# --- /me ----------------------------------------------------------------------------------------------------------

def test_me_for_resident_shows_household_with_balance_score_stars(app, api):
    from moralbank.ledger.models import Account

    response = api.get("/api/v1/me", "resident")
    assert response.status_code == 200
    body = response.get_json()
    assert body["roles"] == ["resident"]
    household = body["household"]
    assert HOUSEHOLD_FIELDS <= set(household)
    assert household["id"] == resident_household_id(app)
    with session_of(app) as session:
        balance = session.scalar(select(Account.balance).where(Account.household_id == household["id"]))
    assert household["balance"] == balance > 0  # the demo resident has points to spend
    assert household["score"] >= household["balance"]  # spending never lowers the score
    assert 0 <= household["stars"] <= 5
    assert body["store"] is None


def test_me_for_clerk_shows_store(app, api):
    from moralbank.people.models import RoleGrant, User
    from moralbank.stores.models import Store

    body = api.get("/api/v1/me", "clerk").get_json()
    assert body["roles"] == ["clerk"]
    with session_of(app) as session:
        store = session.scalar(select(Store).join(RoleGrant, RoleGrant.store_id == Store.id)
                               .join(User, User.id == RoleGrant.user_id).where(User.phone == PHONES["clerk"]))
        assert body["store"] == {"id": store.id, "name": store.name}
    assert body["store"]["name"] == "八里庙村积分超市"
    assert body["household"] is None


def test_me_for_staff_shows_village_code(api):
    for who, village in [("committee", "BLM"), ("grid", "BLM"), ("committee_xlc", "XLC")]:
        body = api.get("/api/v1/me", who).get_json()
        assert body["village"] == village, who
        assert body["household"] is None and body["store"] is None, who


def test_me_for_supervisor_shows_both_villages(api):
    body = api.get("/api/v1/me", "supervisor").get_json()
    assert body["roles"] == ["supervisor"]
    assert sorted(body["villages"]) == ["BLM", "XLC"]


def test_me_without_a_valid_token_is_401(client, api):
    token = api.token("committee")
    for headers in [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer not-a-token"},
                    {"Authorization": "Basic MTM4MDAwMDAwMDE6ZGVtby1wYXNzLTIwMjY="},
                    {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": token}]:
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401, headers
        assert_envelope(response, 401, "unauthorized")
    assert client.get("/api/v1/me", headers={"Authorization": f"bearer  {token} "}).status_code == 200


def test_web_session_cookie_does_not_authenticate_the_api(client, auth):
    assert auth.login("committee").status_code == 302
    assert_envelope(client.get("/api/v1/me"), 401)


def test_revoked_token_is_refused(client, api):
    headers = api.headers("resident")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/auth/tokens/current", headers=headers).status_code == 204
    assert_envelope(client.get("/api/v1/me", headers=headers), 401)
    assert_envelope(client.delete("/api/v1/auth/tokens/current", headers=headers), 401)
    # Other tokens of the same user still work.
    fresh = login(client, PHONES["resident"]).get_json()["token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_expired_token_is_refused(client, api):
    from moralbank.database import travel

    headers = api.headers("committee")
    travel(timedelta(days=29))
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    travel(timedelta(days=2))  # 31 days after issue, past the 30-day lifetime
    assert_envelope(client.get("/api/v1/me", headers=headers), 401)
    # Logging in again gives a working token.
    fresh = login(client, PHONES["committee"]).get_json()["token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


# --- generic errors -------------------------------------------------------------------------------------------------

def test_unknown_api_route_is_404_envelope(client):
    for path in ["/api/v1/nothing-here", "/api/v1/", "/api/v1/households/abc", "/api/v1/me/extra"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert_envelope(response, 404, "not_found")


def test_wrong_method_is_405_envelope(client, api):
    error = assert_envelope(client.get("/api/v1/auth/tokens"), 405, "method_not_allowed")
    assert error["fields"] == {}
    response = client.put("/api/v1/me", headers=api.headers("committee"), json={})
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers.get("Allow", "")


def test_unknown_village_is_404(api):
    assert_envelope(api.get("/api/v1/villages/NOPE/households", "committee"), 404, "not_found")


# --- households -----------------------------------------------------------------------------------------------------

def _all_pages(api, who, path, limit):
    pages, cursor = [], None
    while True:
        query = f"?limit={limit}" + (f"&after={cursor}" if cursor else "")
        response = api.get(path + query, who)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert set(body) >= {"items", "next"}
        pages.append(body["items"])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def test_committee_lists_all_households_across_pages(app, api):
    from moralbank.ledger.models import Account
    from moralbank.people.models import Area, Household

    pages = _all_pages(api, "committee", "/api/v1/villages/BLM/households", 25)
    assert [len(page) for page in pages] == [25, 25, 10]
    items = [item for page in pages for item in page]
    ids = [item["id"] for item in items]
    assert len(set(ids)) == 60 and ids == sorted(ids)
    with session_of(app) as session:
        blm = session.scalar(select(Area).where(Area.code == "BLM"))
        expected = dict(session.execute(select(Household.id, Account.balance).join(Account,
                        Account.household_id == Household.id).where(Household.village_id == blm.id)).all())
        hamlets = {h.name for h in blm.children}
    assert set(ids) == set(expected)
    for item in items:
        assert HOUSEHOLD_FIELDS <= set(item), item
        assert item["balance"] == expected[item["id"]]
        assert item["hamlet"] in hamlets
        assert item["number"].startswith("BLM-") and item["head"]
        assert isinstance(item["score"], int) and 0 <= item["stars"] <= 5
    # The default page holds 50.
    first = api.get("/api/v1/villages/BLM/households", "committee").get_json()
    assert len(first["items"]) == 50 and first["next"] is not None
    rest = api.get(f"/api/v1/villages/BLM/households?after={first['next']}", "committee").get_json()
    assert len(rest["items"]) == 10 and rest["next"] is None
    # One page exactly as large as the village has no next page.
    whole = api.get("/api/v1/villages/BLM/households?limit=60", "committee").get_json()
    assert len(whole["items"]) == 60 and whole["next"] is None


def test_committee_village_code_is_case_insensitive(api):
    assert api.get("/api/v1/villages/blm/households?limit=1", "committee").status_code == 200


def test_grid_manager_sees_only_their_hamlet(app, api):
    items = [item for page in _all_pages(api, "grid", "/api/v1/villages/BLM/households", 10) for item in page]
    assert len(items) == 15
    assert {item["hamlet"] for item in items} == {"八里庙屯"}


def test_supervisor_sees_both_villages(api):
    blm = api.get("/api/v1/villages/BLM/households?limit=200", "supervisor").get_json()["items"]
    xlc = api.get("/api/v1/villages/XLC/households?limit=200", "supervisor").get_json()["items"]
    assert len(blm) == 60 and len(xlc) == 20
    assert all(item["number"].startswith("XLC-") for item in xlc)


def test_households_of_a_village_are_forbidden_to_others(api):
    for who, path in [
        ("committee_xlc", "/api/v1/villages/BLM/households"),
        ("committee_xlc", "/api/v1/villages/BLM"),
        ("committee", "/api/v1/villages/XLC/households"),
        ("grid", "/api/v1/villages/XLC/households"),
        ("resident", "/api/v1/villages/BLM/households"),
        ("clerk", "/api/v1/villages/BLM/households"),
    ]:
        response = api.get(path, who)
        assert response.status_code == 403, (who, path, response.status_code)
        assert_envelope(response, 403, "forbidden")


def test_resident_reads_own_household_but_no_other(app, api):
    own = resident_household_id(app)
    response = api.get(f"/api/v1/households/{own}", "resident")
    assert response.status_code == 200
    body = response.get_json()
    assert HOUSEHOLD_FIELDS <= set(body) and body["id"] == own
    assert any(member["relation"] == "户主" for member in body["members"])
    other, = ids_by_number(app, "BLM-002")
    assert_envelope(api.get(f"/api/v1/households/{other}", "resident"), 404, "not_found")
    assert_envelope(api.get(f"/api/v1/households/{other}/transfers", "resident"), 404, "not_found")
    # Not-yours looks the same as does-not-exist.
    missing = api.get("/api/v1/households/99999999", "resident")
    assert_envelope(missing, 404)
    assert missing.get_json() == api.get(f"/api/v1/households/{other}", "resident").get_json()


def test_household_detail_by_staff(app, api):
    first_hamlet, last_hamlet, xlc = ids_by_number(app, "BLM-001", "BLM-060", "XLC-001")
    assert api.get(f"/api/v1/households/{last_hamlet}", "committee").status_code == 200
    assert api.get(f"/api/v1/households/{xlc}", "supervisor").status_code == 200
    assert api.get(f"/api/v1/households/{first_hamlet}", "grid").status_code == 200
    assert_envelope(api.get(f"/api/v1/households/{xlc}", "committee"), 404)
    assert_envelope(api.get(f"/api/v1/households/{xlc}", "grid"), 404)
    assert_envelope(api.get(f"/api/v1/households/{first_hamlet}", "committee_xlc"), 404)
    assert_envelope(api.get(f"/api/v1/households/{first_hamlet}", "clerk"), 404)


def test_household_detail_agrees_with_the_list(api, app):
    own = resident_household_id(app)
    listed = next(item for item in api.get("/api/v1/villages/BLM/households?limit=200", "committee")
                  .get_json()["items"] if item["id"] == own)
    detail = api.get(f"/api/v1/households/{own}", "committee").get_json()
    me = api.get("/api/v1/me", "resident").get_json()["household"]
    for key in HOUSEHOLD_FIELDS:
        assert listed[key] == detail[key] == me[key], key


# --- transfers ------------------------------------------------------------------------------------------------------

def _busy_household(app) -> tuple[int, int, dict[int, int]]:
    """A BLM household with awards, a deduction and a redemption: (id, account id, {transfer id: signed amount})."""
    from moralbank.ledger.models import Account, Transfer
    from moralbank.people.models import Area, Household

    with session_of(app) as session:
        blm = session.scalar(select(Area.id).where(Area.code == "BLM"))
        accounts = session.execute(select(Household.id, Account.id).join(Account, Account.household_id == Household.id)
                                   .where(Household.village_id == blm).order_by(Household.id)).all()
        for household_id, account_id in accounts:
            rows = session.execute(select(Transfer.id, Transfer.code, Transfer.amount, Transfer.credit_account_id)
                                   .where(or_(Transfer.debit_account_id == account_id,
                                              Transfer.credit_account_id == account_id))).all()
            codes = {row.code for row in rows}
            if {"award", "deduction", "redemption"} <= codes:
                return household_id, account_id, {
                    row.id: row.amount if row.credit_account_id == account_id else -row.amount for row in rows}
    pytest.fail("the demo has no household with awards, a deduction and a redemption")


def test_transfers_newest_first_signed_and_paginated(app, api):
    household_id, account_id, expected = _busy_household(app)
    lines, cursor, pages = [], None, 0
    while True:
        path = f"/api/v1/households/{household_id}/transfers?limit=7" + (f"&before={cursor}" if cursor else "")
        response = api.get(path, "committee")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len(body["items"]) <= 7
        pages += 1
        page_ids = {line["id"] for line in body["items"]}
        assert not page_ids & {line["id"] for line in lines}, "pages overlap"
        lines.extend(body["items"])
        cursor = body["next"]
        if cursor is None:
            break
        assert len(body["items"]) == 7
    assert pages == -(-len(expected) // 7)
    ids = [line["id"] for line in lines]
    assert ids == sorted(expected, reverse=True)  # every line exactly once, newest first
    created = [datetime.fromisoformat(line["created_at"]) for line in lines]
    assert created == sorted(created, reverse=True)
    for line in lines:
        assert {"id", "code", "amount", "created_at", "reason"} <= set(line)
        assert line["amount"] == expected[line["id"]]
        if line["code"] == "award":
            assert line["amount"] > 0
        elif line["code"] in ("redemption", "deduction"):
            assert line["amount"] < 0
    assert {"award", "deduction", "redemption"} <= {line["code"] for line in lines}
    # The lines add up to the balance shown for the household.
    balance = api.get(f"/api/v1/households/{household_id}", "committee").get_json()["balance"]
    assert sum(line["amount"] for line in lines) == balance


def test_transfers_default_and_maximum_limits(app, api):
    household_id, _, expected = _busy_household(app)
    default = api.get(f"/api/v1/households/{household_id}/transfers", "committee").get_json()
    assert len(default["items"]) == min(50, len(expected))
    everything = api.get(f"/api/v1/households/{household_id}/transfers?limit=200", "committee").get_json()
    assert len(everything["items"]) == len(expected) and everything["next"] is None


def test_bad_paging_arguments_are_422(app, api):
    own = resident_household_id(app)
    for query, field in [("limit=201", "limit"), ("limit=0", "limit"), ("limit=abc", "limit"),
                         ("before=-5", "before"), ("before=x", "before")]:
        response = api.get(f"/api/v1/households/{own}/transfers?{query}", "resident")
        assert response.status_code == 422, query
        error = assert_envelope(response, 422, "invalid")
        assert field in error["fields"], (query, error)
    error = assert_envelope(api.get("/api/v1/villages/BLM/households?limit=500", "committee"), 422, "invalid")
    assert "limit" in error["fields"]
    assert api.get(f"/api/v1/households/{own}/transfers?limit=200", "resident").status_code == 200


def test_resident_reads_own_transfers(app, api):
    own = resident_household_id(app)
    body = api.get(f"/api/v1/households/{own}/transfers?limit=200", "resident").get_json()
    assert body["items"] and body["next"] is None
    assert sum(line["amount"] for line in body["items"]) == api.get("/api/v1/me", "resident").get_json()[
        "household"]["balance"]


# --- OpenAPI --------------------------------------------------------------------------------------------------------

def _resolve(spec, ref: str):
    assert ref.startswith("#/"), ref
    node = spec
    for part in ref[2:].split("/"):
        assert part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_document_is_valid_and_complete(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.is_json
    spec = response.get_json()
    try:  # the real validator when it is installed; structural checks below in any case
        from openapi_spec_validator import validate as validate_spec
    except ImportError:
        validate_spec = None
    if validate_spec is not None:
        validate_spec(spec)

    assert re.fullmatch(r"3\.\d+\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"]
    servers = [server["url"] for server in spec.get("servers", [{"url": "/"}])]
    base = servers[0].rstrip("/")
    assert base in ("", "/api/v1"), servers

    # Every API route but the document itself is there, with each of its methods.
    documented = {base + path: ops for path, ops in spec["paths"].items()}
    routes = [rule for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") and rule.endpoint != "api.openapi"]
    assert routes
    for rule in routes:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in documented, f"{path} is not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in documented[path], f"{method} {path} is not documented"
    assert "/api/v1/openapi.json" not in documented
    assert len(documented) == len({re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", r.rule) for r in routes})

    schemas = spec["components"]["schemas"]
    error_schemas = [name for name, schema in schemas.items() if "error" in schema.get("properties", {})]
    assert error_schemas, "no error envelope schema"
    error_body = schemas[error_schemas[0]]["properties"]["error"]
    error_body = _resolve(spec, error_body["$ref"]) if "$ref" in error_body else error_body
    assert {"code", "message", "fields"} <= set(error_body["properties"])
    for ref in _refs(spec):
        _resolve(spec, ref)

    schemes = spec["components"].get("securitySchemes", {})
    for path, operations in spec["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, operation in operations.items():
            assert method in ("get", "post", "put", "patch", "delete"), method
            assert operation["responses"], f"{method} {path} has no responses"
            for status, answer in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), status
                assert answer.get("description") is not None
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema.get("$ref") == f"#/components/schemas/{error_schemas[0]}"
            params = operation.get("parameters", [])
            declared = {p["name"] for p in params if p.get("in") == "path"}
            assert declared == templated, (path, declared)
            for param in params:
                assert param["in"] in ("path", "query", "header", "cookie") and param["name"] and "schema" in param
                if param["in"] == "path":
                    assert param["required"] is True
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)
    # Everything but logging in needs the bearer token.
    assert "security" not in spec["paths"]["/auth/tokens"]["post"]
    assert spec["paths"]["/me"]["get"]["security"]


def test_openapi_paths_resolve_against_servers(client):
    """A client that joins servers[0] and a path reaches the real route."""
    spec = client.get("/api/v1/openapi.json").get_json()
    base = spec.get("servers", [{"url": "/"}])[0]["url"].rstrip("/")
    me = next(path for path, ops in spec["paths"].items() if path.endswith("/me"))
    assert client.get(base + me).status_code == 401  # the route exists (and wants a token)
    assert_envelope(client.get(base + me), 401)


# --- login throttling (real Redis) ----------------------------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


# In CI (.ci/run starts Redis) a missing Redis is a failure, never a silent skip.
@pytest.mark.skipif(not os.environ.get("CI") and redis_down_reason(REDIS_URL) is not None,
                    reason=str(redis_down_reason(REDIS_URL)))
class TestLoginThrottle:
    @pytest.fixture
    def app_config(self):
        return {"RATELIMIT_STORAGE_URI": REDIS_URL, "LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS": "3 per minute"}

    def test_limiter_uses_redis(self, app):
        from moralbank.extensions import limiter

        assert app.config["RATELIMIT_STORAGE_URI"].startswith("redis://")
        assert "redis" in type(limiter.storage).__name__.lower()
        assert app.extensions["moralbank.throttle"].redis is not None  # the password-guess counters too

    def test_the_account_waits_at_an_address_after_failed_attempts(self, client):
        phone = PHONES["committee"]
        for _ in range(3):
            assert_envelope(login(client, phone, "wrong-password"), 401)
        error = assert_envelope(login(client, phone), 429, "rate_limited")  # even the right password, from here
        assert error["message"]
        assert_envelope(login(client, phone, "wrong-password"), 429)
        # Another account from the same address is not locked.
        assert login(client, PHONES["resident"]).status_code == 201

    def test_successful_logins_do_not_count(self, client):
        phone = PHONES["clerk"]
        for _ in range(5):
            assert login(client, phone).status_code == 201
        for _ in range(2):
            assert_envelope(login(client, phone, "wrong-password"), 401)
        assert login(client, phone).status_code == 201
        assert_envelope(login(client, phone, "wrong-password"), 401)
        assert_envelope(login(client, phone), 429)

    def test_phone_spelling_does_not_escape_the_lock(self, client):
        for spelling in ("13800000002", "+86 13800000002", "138-0000-0002"):
            assert_envelope(login(client, spelling, "wrong-password"), 401)
        assert_envelope(login(client, "8613800000002"), 429)


# --- idempotency (moralbank.idempotency.run_once) -------------------------------------------------------------------

@pytest.fixture
def idem(app):
    """run_once inside a request context, with a real user and an action that writes an audit entry."""
    from moralbank.audit.models import AuditEntry
    from moralbank.idempotency import IdempotencyRecord, run_once
    from moralbank.people.models import User

    class Idem:
        calls = 0

        def __init__(self):
            self.user = db.session.scalar(select(User).where(User.phone == PHONES["committee"]))
            self.other = db.session.scalar(select(User).where(User.phone == PHONES["grid"]))

        def action(self, fail: bool = False):
            from moralbank.audit.service import record
            from moralbank.errors import Invalid

            def run():
                Idem.calls += 1
                record("test.idempotent", actor=self.user, detail={"call": Idem.calls})
                db.session.flush()
                if fail:
                    raise Invalid("the action failed")
                return {"call": Idem.calls, "ok": True}, 201
            return run

        def run(self, key, body, *, user=None, fail=False, required=True):
            return run_once(user or self.user, key, body, self.action(fail), required=required)

        def effects(self) -> int:
            db.session.rollback()
            return db.session.scalar(select(func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.action == "test.idempotent"))

        def records(self, key) -> list:
            db.session.rollback()
            return db.session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == key)).all()

    with app.test_request_context("/api/v1/test-idempotency", method="POST"):
        try:
            yield Idem()
        finally:
            db.session.remove()


def test_same_key_and_body_replays_without_running_again(idem):
    key = uuid.uuid4().hex
    body = {"household_id": 1, "points": 5}
    first = idem.run(key, body)
    assert first == ({"call": 1, "ok": True}, 201, False)
    second = idem.run(key, {"points": 5, "household_id": 1})  # same body, other key order
    assert second == ({"call": 1, "ok": True}, 201, True)
    assert idem.calls == 1 and idem.effects() == 1
    record, = idem.records(key)
    assert record.status_code == 201 and record.response_body == {"call": 1, "ok": True}


def test_same_key_with_other_body_is_409(idem):
    from moralbank.idempotency import IdempotencyConflict

    key = uuid.uuid4().hex
    idem.run(key, {"points": 5})
    with pytest.raises(IdempotencyConflict) as refused:
        idem.run(key, {"points": 6})
    assert refused.value.status == 409 and refused.value.code == "idempotency_conflict"
    assert idem.calls == 1 and idem.effects() == 1


def test_keys_are_per_user(idem):
    key = uuid.uuid4().hex
    assert idem.run(key, {"a": 1})[2] is False
    assert idem.run(key, {"a": 2}, user=idem.other)[2] is False
    assert idem.calls == 2 and idem.effects() == 2


def test_missing_key_when_required_is_422(idem):
    from moralbank.errors import Invalid

    for key in (None, ""):
        with pytest.raises(Invalid) as refused:
            idem.run(key, {"a": 1})
        assert refused.value.status == 422 and "Idempotency-Key" in refused.value.fields
    assert idem.calls == 0 and idem.effects() == 0


def test_key_optional_runs_every_time(idem):
    assert idem.run(None, {"a": 1}, required=False) == ({"call": 1, "ok": True}, 201, False)
    assert idem.run(None, {"a": 1}, required=False)[0]["call"] == 2
    assert idem.effects() == 2


def test_overlong_key_is_422(idem):
    from moralbank.errors import Invalid

    with pytest.raises(Invalid) as refused:
        idem.run("k" * 129, {"a": 1})
    assert refused.value.status == 422
    assert idem.calls == 0
    assert idem.run("k" * 128, {"a": 1})[2] is False


def test_failed_action_leaves_no_record_so_a_retry_runs(idem):
    from moralbank.errors import Invalid

    key = uuid.uuid4().hex
    with pytest.raises(Invalid):
        idem.run(key, {"a": 1}, fail=True)
    assert idem.records(key) == [] and idem.effects() == 0  # its writes rolled back too
    payload, status, replayed = idem.run(key, {"a": 1})
    assert (status, replayed) == (201, False) and idem.calls == 2
    assert idem.effects() == 1 and len(idem.records(key)) == 1
    assert idem.run(key, {"a": 1})[2] is True


# --- found by fuzzing the API (tests/test_fuzz_api.py); each failed before its fix ----------------------------------

PAST_CONVERTER = 2**53 + 1  # refused by the app's <int:> converter
PAST_INT4 = 2**31  # past the INTEGER id columns: on PostgreSQL the query itself failed, a 500


@pytest.mark.parametrize("method, path", [
    ("delete", f"/api/v1/households/{PAST_CONVERTER}/cards"),  # POST has a rule on the same path
    ("post", f"/api/v1/stores/{PAST_CONVERTER}/items"),  # …and GET here
    ("get", f"/api/v1/stores/{PAST_CONVERTER}/redemptions"),  # …and POST here
])
def test_an_id_past_the_converter_is_404_even_where_the_path_has_another_method(client, api, method, path):
    # Werkzeug answered 405 (Allow: POST) because the other method's rule matched the same path.
    response = getattr(client, method)(path, headers=api.headers("committee", **{"Idempotency-Key": "k1"}), json={})
    assert_envelope(response, 404, "not_found")
    assert "Allow" not in response.headers


def test_a_wrong_method_is_still_405_with_allow(client, api):
    response = client.put("/api/v1/stores/1/items", headers=api.headers("committee"), json={})
    assert_envelope(response, 405, "method_not_allowed")
    assert {"GET", "POST"} <= {method.strip() for method in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("path", [
    f"/api/v1/households/{PAST_INT4}", f"/api/v1/households/{PAST_INT4}/transfers", f"/api/v1/awards/{PAST_INT4}",
    f"/api/v1/ranking-snapshots/{PAST_INT4}", f"/api/v1/stores/{PAST_INT4}/items",
    f"/api/v1/stores/{PAST_INT4}/statement",
])
def test_path_ids_past_an_integer_column_are_404(client, api, path):
    assert_envelope(client.get(path, headers=api.headers("committee")), 404)


@pytest.mark.parametrize("method, path, body", [
    ("patch", f"/api/v1/items/{PAST_INT4}", {"stock": 1}),
    ("patch", f"/api/v1/rules/{PAST_INT4}", {"title": "x"}),
    ("post", f"/api/v1/awards/{PAST_INT4}/approve", None),
    ("post", f"/api/v1/transfers/{PAST_INT4}/reversal", {"reason": "x"}),
    ("post", f"/api/v1/households/{PAST_INT4}/cards", {"pin": "1234"}),
    ("delete", f"/api/v1/households/{PAST_INT4}/cards", None),
])
def test_writes_to_ids_past_an_integer_column_are_404(client, api, method, path, body):
    headers = api.headers("committee", **{"Idempotency-Key": uuid.uuid4().hex})
    assert_envelope(getattr(client, method)(path, headers=headers, json=body), 404)


@pytest.mark.parametrize("path", [
    f"/api/v1/stores/1/redemptions?before={PAST_INT4}",  # was read with bounded_int (15 digits): a 500
    f"/api/v1/villages/BLM/awards?household_id={PAST_INT4}",
    f"/api/v1/villages/BLM/awards?before={PAST_INT4}",
    f"/api/v1/villages/BLM/households?after={PAST_INT4}",
])
def test_query_ids_past_an_integer_column_are_422(api, path):
    assert_envelope(api.get(path, "committee"), 422, "invalid")


def test_body_ids_past_an_integer_column_are_422(api):
    error = assert_envelope(api.post("/api/v1/awards", "committee", json={"household_id": 1, "rule_id": PAST_INT4}),
                            422, "invalid")
    assert "rule_id" in error["fields"]
    store = api.get("/api/v1/me", "clerk").get_json()["store"]["id"]
    body = {"code": "12345678", "items": [{"item_id": PAST_INT4, "quantity": 1}]}
    assert_envelope(api.post(f"/api/v1/stores/{store}/redemptions", "clerk", json=body), 422, "invalid")


def test_redemption_list_paging_is_validated(api):
    store = api.get("/api/v1/me", "clerk").get_json()["store"]["id"]
    first = api.get(f"/api/v1/stores/{store}/redemptions?limit=2", "clerk").get_json()
    assert len(first["items"]) == 2 and first["next"]
    following = api.get(f"/api/v1/stores/{store}/redemptions?limit=2&before={first['next']}", "clerk").get_json()
    assert following["items"][0]["id"] < first["items"][-1]["id"]
    for query in ("limit=0", "limit=201", "before=0", "before=x"):
        assert_envelope(api.get(f"/api/v1/stores/{store}/redemptions?{query}", "clerk"), 422, "invalid")


def test_a_month_with_a_final_newline_or_other_digits_is_not_a_second_settlement(app, api):
    # The period was checked with a "$"-anchored \d pattern: "2026-10\n" (and "20２６-10") passed and
    # settled October a second time, paying the store twice.
    from zoneinfo import ZoneInfo

    from moralbank.database import utcnow
    from moralbank.stores.models import Settlement

    first = utcnow().astimezone(ZoneInfo("Asia/Shanghai")).replace(day=1)
    month = (first - timedelta(days=1)).strftime("%Y-%m")
    store = api.get("/api/v1/me", "clerk").get_json()["store"]["id"]
    fullwidth = month[:2] + chr(ord(month[2]) + 0xFEE0) + month[3:]
    for spelling in (month + "\n", fullwidth):
        response = api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": spelling})
        assert_envelope(response, 422, "invalid")
    assert api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": month}).status_code == 201
    again = api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": month + "\n"})
    assert_envelope(again, 422, "invalid")
    assert_envelope(api.get(f"/api/v1/stores/{store}/statement?period={month}%0A", "committee"), 422, "invalid")
    with session_of(app) as session:
        assert session.scalar(select(func.count()).select_from(Settlement)
                              .where(Settlement.store_id == store)) == 1


def test_a_pin_is_plain_digits_without_a_final_newline(api):
    for pin in ("1234\n", "１２３４"):
        assert_envelope(api.post("/api/v1/households/1/cards", "committee", json={"pin": pin}), 422, "invalid")


def test_me_of_a_supervisor_conforms_to_the_document(client, api):
    # The document said Me has no other properties; a supervisor's answer carried "villages" too.
    me = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["Me"]
    body = api.get("/api/v1/me", "supervisor").get_json()
    assert set(body) <= set(me["properties"]), set(body) - set(me["properties"])
    assert sorted(body["villages"]) == ["BLM", "XLC"]


def test_openapi_tells_the_truth_about_parameters_and_answers(client):
    from moralbank.api.schemas import ID_MAX

    spec = client.get("/api/v1/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            responses = set(operation["responses"])
            params = operation.get("parameters", [])
            for param in params:
                if param["in"] == "path" and param["name"].endswith("_id"):
                    assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": ID_MAX}, label
                if param["in"] == "query":  # a query string has no null
                    assert "nullable" not in param["schema"] and None not in param["schema"].get("enum", []), label
            if "security" in operation:
                assert "401" in responses, label
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= responses, label
            if any(param["in"] == "query" for param in params):
                assert "422" in responses, label
            key = next((param for param in params if param["name"] == "Idempotency-Key"), None)
            if key is not None:
                assert "422" in responses, label  # a missing or overlong key
            for status, answer in operation["responses"].items():
                if status.startswith("2") and status != "204":
                    assert answer.get("content"), f"{label} {status} has no documented body"
    approve = spec["paths"]["/awards/{award_id}/approve"]["post"]["parameters"]
    assert next(p for p in approve if p["name"] == "Idempotency-Key")["required"] is True
    reject = spec["paths"]["/awards/{award_id}/reject"]["post"]["parameters"]
    assert next(p for p in reject if p["name"] == "Idempotency-Key")["required"] is False
    assert "image/png" in spec["paths"]["/redemption-codes/{code}/qr.png"]["get"]["responses"]["200"]["content"]
