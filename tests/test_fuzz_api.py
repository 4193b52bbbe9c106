"""Fuzzing the JSON API with schemathesis, in-process, from its own OpenAPI document.

schemathesis reads ``/api/v1/openapi.json`` (served by an app made only for
that, at import) and makes one test per operation and pass. Each pass runs on
its own fresh copy of the demo database (one per pass, not per operation: a
PostgreSQL database costs seconds to make and drop), in the document's order of
operations, so a run is reproducible; after the pass the ledger must verify
clean.

- committee (13800000001): every operation, with the coverage phase (boundary
  values, missing and wrong-typed fields, wrong types in the path and query,
  methods a path does not have) and random cases, valid and invalid;
- resident (13800000003) and clerk (13800000004): their own operations, random
  cases only, so that their permissions are exercised;
- NUL characters (committee, every operation, random cases): a NUL forced into
  every generated string, and into the query of a case without one; the edge
  must answer each with 400 ``invalid_characters`` (PostgreSQL cannot store a NUL:
  before the edge's guard it was a 500 there). The other passes generate NULs
  too, by chance (schemathesis' ``allow-x00``, on by default).

Every answer must be: not a 5xx, a documented status code, of the documented
content type, with a body that conforms to the documented schema (error answers
included: the error envelope). A failure is a bug of the app or of the
document; fix it rather than switching a check off.

Requests carry a real bearer token of the pass's user (issued by the same code
as ``POST /auth/tokens``, without the password hash's cost per test) and, on
POST/PATCH/DELETE, a fresh Idempotency-Key. Generated ids would nearly always
find nothing, so three out of four valid generated ids (in the path, or
household_id, rule_id, item_id, code, card and pin in a body) are mapped onto
ones that exist, by a function of the case's generated values, so that a
failing case replays the same way (on a database its pass has changed since,
so hypothesis may call a failure that does not repeat "flaky": still a failure).

``MORALBANK_FUZZ_EXAMPLES`` bounds the random cases per operation (default 6);
the seed is fixed (``MORALBANK_FUZZ_SEED`` to explore others), so every run
sends the same cases. A deeper look: ``MORALBANK_FUZZ_EXAMPLES=100``.
"""
from __future__ import annotations

import json
import os
import uuid
import zlib

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from support import PHONES, SECRET, app_on_fresh_database
from moralbank.api.schemas import ID_MAX
from moralbank.extensions import db

EXAMPLES = int(os.environ.get("MORALBANK_FUZZ_EXAMPLES", "6"))
SEED = int(os.environ.get("MORALBANK_FUZZ_SEED", "20261128"))

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

RESIDENT_OPERATIONS = {
    "GET /me", "DELETE /auth/tokens/current", "GET /households/{household_id}",
    "GET /households/{household_id}/transfers", "POST /awards", "GET /awards/{award_id}",
    "POST /awards/{award_id}/objections", "POST /redemption-codes", "GET /redemption-codes/{code}/qr.png",
    "GET /redemption-codes/{code}/qr.svg", "GET /villages/{code}/rules", "GET /stores/{store_id}/items",
}
CLERK_OPERATIONS = {
    "GET /me", "GET /stores/{store_id}/items", "PATCH /items/{item_id}",
    "POST /stores/{store_id}/redemption-previews", "POST /stores/{store_id}/redemptions",
    "GET /stores/{store_id}/redemptions", "GET /stores/{store_id}/statement", "POST /stores/{store_id}/card-unlocks",
}
CARD_PIN = "2468"


def fuzz_config(*, coverage: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        # how fast hypothesis makes cases depends on the machine, not on the app: not a failure
        "suppress-health-check": ["too_slow"],
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        # One request per case, no chains of requests following the document's links.
        "phases": {"coverage": {"enabled": coverage}, "stateful": {"enabled": False}},
    })


def _document_app():
    """An app that only serves the document (from its URL map); the cases run against each pass's app."""
    from moralbank import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": SECRET, "TESTING": True,
                       "RATELIMIT_STORAGE_URI": "memory://"})


_DOCUMENT_APP = _document_app()
committee_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _DOCUMENT_APP,
                                                  config=fuzz_config(coverage=True))
role_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _DOCUMENT_APP,
                                             config=fuzz_config(coverage=False))


def _fingerprint(case) -> int:
    """A number from everything generated for the case (the coverage phase varies one value at a
    time and holds the others, so the value alone would always pick the same id)."""
    generated = [case.path_parameters, case.query, case.body]
    return zlib.crc32(json.dumps(generated, sort_keys=True, default=repr).encode())


def _pick(generated, pool: list, salt: int):
    """Three out of four valid generated values become one of ``pool``, chosen by the case.

    Invalid values (a string or an out-of-range number for an id) are left alone: the invalid
    cases are there to be refused.
    """
    if not pool or isinstance(generated, bool) or type(generated) is not type(pool[0]):
        return generated
    if isinstance(generated, int) and not 1 <= generated <= ID_MAX:
        return generated
    number = zlib.crc32(f"{salt}:{generated!r}".encode("utf-8", "surrogatepass"))
    if number % 4 == 0:
        return generated
    return pool[(number // 4) % len(pool)]


def arrange(app, *, card: bool = False) -> dict:
    """Objects the passes can act on beyond the demo's history: a proposed award and two in public
    notice, the resident's live payment codes, a published ranking and (``card``) a paper card."""
    from moralbank.awards import service as awards
    from moralbank.awards.models import Rule
    from moralbank.database import write_transaction
    from moralbank.people import access
    from moralbank.people.models import Area, Household, User
    from moralbank.rankings import service as rankings
    from moralbank.stores import service as stores

    with app.app_context():
        users = {who: db.session.scalar(select(User).where(User.phone == PHONES[who]))
                 for who in ("committee", "resident")}
        village = db.session.scalar(select(Area).where(Area.code == "BLM"))
        own = access.resident_household_ids(users["resident"])
        households = db.session.scalars(select(Household.id).where(
            Household.village_id == village.id, Household.id.not_in(own)).order_by(Household.id).limit(3)).all()
        # a small deduction: no cap, no photo, under the approval threshold, so the proposer may approve it
        rule = db.session.scalar(select(Rule).where(
            Rule.village_id == village.id, Rule.active.is_(True), Rule.points < 0,
            Rule.points >= -village.approval_threshold, Rule.photo_required.is_(False)).order_by(Rule.id))
        with write_transaction():
            for number, household_id in enumerate(households):
                award = awards.propose(users["committee"], awards.Proposal(household_id=household_id,
                                                                           rule_id=rule.id))
                if number:
                    awards.approve(users["committee"], award.id)
            for _ in range(4):
                stores.issue_code(users["resident"])
            rankings.publish(users["committee"], village, "all")
            # (the PIN's argon2 hash costs ~0.4 s, so only the pass that unlocks cards gets one)
            if card:
                _card, card_token = stores.issue_card(users["committee"],
                                                      db.session.get(Household, households[0]), CARD_PIN)
        db.session.remove()
    return {"card": [card_token], "pin": [CARD_PIN]} if card else {"card": [], "pin": []}


class Fuzzer:
    """One user's token and the existing ids its cases are mapped onto, on one pass's app."""

    def __init__(self, app, who: str, *, card: bool = False):
        from moralbank.awards.models import Award, Rule
        from moralbank.ledger.models import Transfer
        from moralbank.people import access
        from moralbank.people.auth import issue_token
        from moralbank.people.models import Area, Household, User
        from moralbank.stores.models import Item, Store

        self.app = app
        self.extra = arrange(app, card=card)
        with app.app_context():
            self.user_id = db.session.scalar(select(User.id).where(User.phone == PHONES[who]))
            self.token, _record = issue_token(db.session.get(User, self.user_id))
            resident = db.session.scalar(select(User).where(User.phone == PHONES["resident"]))
            self.resident_households = sorted(access.resident_household_ids(resident))
            self.villages = {code: db.session.scalar(select(Area.id).where(Area.code == code))
                             for code in ("BLM", "XLC")}
            # Mostly the users' own village (BLM), and one id of the other village's.
            self.static = {
                "household_id": self.resident_households + self._ids(Household.id, Household.village_id, 4),
                "rule_id": self._ids(Rule.id, Rule.village_id, 8),
                "store_id": self._ids(Store.id, Store.village_id, 2),
                "item_id": self._ids(Item.id, Store.village_id, 10, join=(Store, Item.store_id == Store.id)),
                "transfer_id": self._ids(Transfer.id, Award.village_id, 8,
                                         join=(Award, Transfer.award_id == Award.id), newest=True),
            }
            db.session.remove()

    def _ids(self, column, village_column, home: int, *, join=None, newest=False) -> list[int]:
        """``home`` ids of BLM and one of XLC (the first ones, or the newest)."""
        def query(village, limit):
            statement = select(column)
            if join is not None:
                statement = statement.join(*join)
            statement = statement.where(village_column == self.villages[village])
            return list(db.session.scalars(statement.order_by(column.desc() if newest else column).limit(limit)))
        return query("BLM", home) + query("XLC", 1)

    def pools(self, path: str) -> dict[str, list]:
        """Existing ids by parameter name; awards, snapshots and codes change as the cases run."""
        from moralbank.awards.models import Award
        from moralbank.database import utcnow
        from moralbank.rankings.models import RankingSnapshot
        from moralbank.stores.models import RedemptionCode

        with self.app.app_context():
            pools = dict(self.static, **self.extra)
            pools["award_id"] = self._ids(Award.id, Award.village_id, 10, newest=True)
            pools["snapshot_id"] = list(db.session.scalars(select(RankingSnapshot.id)))
            pools["redemption_code"] = list(db.session.scalars(select(RedemptionCode.code).where(
                RedemptionCode.household_id.in_(self.resident_households), RedemptionCode.card_id.is_(None),
                RedemptionCode.consumed_at.is_(None), RedemptionCode.expires_at > utcnow())
                .order_by(RedemptionCode.id.desc()).limit(6)))
            pools["code"] = pools["redemption_code"] if path.startswith("/redemption-codes") else ["BLM"] * 3 + ["XLC"]
            db.session.remove()
        return pools

    def prepare(self, case) -> dict:
        """Map generated ids onto existing ones; the headers to send."""
        pools = self.pools(case.path)
        salt = _fingerprint(case)
        for name, value in list((case.path_parameters or {}).items()):
            case.path_parameters[name] = _pick(value, pools.get(name, []), salt)
        body = case.body
        if isinstance(body, dict):
            for name in ("household_id", "rule_id", "card", "pin"):
                if name in body:
                    body[name] = _pick(body[name], pools[name], salt)
            if "code" in body and case.path.startswith("/stores/"):
                body["code"] = _pick(body["code"], pools["redemption_code"], salt)
            if isinstance(body.get("items"), list):
                for line in body["items"]:
                    if isinstance(line, dict) and "item_id" in line:
                        line["item_id"] = _pick(line["item_id"], pools["item_id"], salt)
        headers = {"Authorization": f"Bearer {self.token}"}
        if case.path == "/auth/tokens/current":
            headers["Authorization"] = f"Bearer {self._throwaway_token()}"
        if case.method.upper() in ("POST", "PATCH", "DELETE", "PUT"):
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return headers

    def _throwaway_token(self) -> str:
        """Another token of the same user: revoking it leaves the pass's own token working."""
        from moralbank.people.auth import issue_token
        from moralbank.people.models import User

        with self.app.app_context():
            token, _record = issue_token(db.session.get(User, self.user_id))
            db.session.remove()
        return token

    def run(self, case):
        headers = self.prepare(case)
        return case.call_and_validate(headers=headers, checks=CHECKS, app=self.app)


def pass_app(databases, folder):
    """An app on a fresh copy of the demo database for one pass; its ledger must verify clean after."""
    return app_on_fresh_database(databases, folder, extra={"UPLOAD_FOLDER": str(folder / "uploads")})


@pytest.fixture(scope="module")
def committee(databases, tmp_path_factory):
    with pass_app(databases, tmp_path_factory.mktemp("fuzz-committee")) as application:
        yield Fuzzer(application, "committee")


@pytest.fixture(scope="module")
def resident(databases, tmp_path_factory):
    with pass_app(databases, tmp_path_factory.mktemp("fuzz-resident")) as application:
        yield Fuzzer(application, "resident")


@pytest.fixture(scope="module")
def clerk(databases, tmp_path_factory):
    with pass_app(databases, tmp_path_factory.mktemp("fuzz-clerk")) as application:
        yield Fuzzer(application, "clerk", card=True)


@committee_schema.parametrize()
def test_fuzz_as_committee(case, committee):
    committee.run(case)


@role_schema.include(lambda ctx: ctx.operation.label in RESIDENT_OPERATIONS).parametrize()
def test_fuzz_as_resident(case, resident):
    resident.run(case)


@role_schema.include(lambda ctx: ctx.operation.label in CLERK_OPERATIONS).parametrize()
def test_fuzz_as_clerk(case, clerk):
    clerk.run(case)


def _with_nul(value):
    """``value`` with a NUL character inside every string (keys of objects too)."""
    if isinstance(value, str):
        return value[:1] + "\x00" + value[1:]
    if isinstance(value, dict):
        return {_with_nul(key): _with_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_nul(item) for item in value]
    return value


def inject_nul(case) -> None:
    """Put a NUL in every generated string of the case (path, query, body); a case with no string
    at all gets a query parameter that is one."""
    # (names of path and query parameters stay: they are the document's, not generated)
    case.path_parameters = {name: _with_nul(value) for name, value in (case.path_parameters or {}).items()} or None
    case.query = {name: _with_nul(value) for name, value in (case.query or {}).items()}
    if case.body is not None and not isinstance(case.body, (bytes, bytearray)):
        case.body = _with_nul(case.body)
    if "\\u0000" not in json.dumps([case.path_parameters, case.query, case.body], default=repr):
        case.query["q"] = "\x00"


@role_schema.parametrize()
def test_fuzz_with_nul_characters(case, committee):
    """Every operation, a NUL forced into every string (PostgreSQL's text cannot hold one): the
    edge answers 400 with the envelope, never a 5xx, whatever the operation or the role."""
    headers = committee.prepare(case)
    inject_nul(case)
    response = case.call_and_validate(headers=headers, checks=CHECKS, app=committee.app)
    assert response.status_code == 400, (case.method, case.formatted_path, response.text[:300])
    assert response.json()["error"]["code"] == "invalid_characters"


def test_every_role_operation_is_in_the_document():
    """The role passes name operations by label: a renamed route must not silently drop out of them."""
    labels = {operation.ok().label for operation in role_schema.get_all_operations()}
    assert RESIDENT_OPERATIONS <= labels and CLERK_OPERATIONS <= labels, \
        (RESIDENT_OPERATIONS | CLERK_OPERATIONS) - labels
