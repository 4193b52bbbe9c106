"""The ledger against a model: Hypothesis drives random sequences of awards,
deductions, bare ledger spends, payment codes issued (``issue_code``) and redeemed
at a store's till (``redeem_with_code``: points and goods off its shelf), restocking,
settlements with the store (``settle``), reversals by the committee's service (the
API's ``reverse_transfer``), replays and key conflicts, while the clock moves on
(codes expire, months end) — over a few households of the demo village and a
store of the sequence's own. After every step the database must agree with a
plain Python model of what each account, score, shelf, code and settlement holds.

Invariants after every step (one statement reads all but ``verify()``):

* every tracked cached balance equals the model (so every refusal changed nothing,
  and every replay moved nothing), the households' and the store's balances
  recomputed from their transfers do too, and exactly the transfers the model
  expects were written (no refused request left a row behind);
* a household below zero got there by a deduction or a reversal (or already was), never by spending;
* the village's balances sum to zero;
* the households' scores in every period (month, quarter, year, all time) equal the model
  (spending never changes them; a reversal takes back in the original's periods);
* every item's stock equals the model (it never goes below zero; a refused
  redemption gives back what it took, and so does a reversed one); every code is used or unused as the model
  says (a refused redemption leaves its code usable); the store's redemptions and
  settlements are the model's;
* ``verify()`` finds nothing (every ``MORALBANK_MODEL_VERIFY_EVERY``-th step).
* (一票否决, issue 14) a household is vetoed exactly when it has a posted, unreversed award under
  a veto item posted in the current veto period (the village's year); a vetoed
  household has no stars, and a red list published then leaves it out.

What the model predicts, rule by rule, is what the services promise: a redemption is
refused with ``code_used`` (409) for a used code, ``code_expired`` (409) once its
lifetime is over, ``code_replaced`` (409) once a newer code of its household ended it (one open code per household), ``out_of_stock`` when an item is short, ``empty_cart`` when nothing
is bought and ``insufficient_points`` when the household cannot pay — and any refusal
changes nothing. A month is settled once it is over, for the points of the code
redemptions credited to the store in it less those reversed, once
(``already_settled``); a settlement is never reversed, nor a redemption (or any
spend at the store) of a month the store has been paid for (``period_settled``).

Time: each sequence puts the app's clock at a drawn local wall-clock start (mid-month,
or minutes before a month or year ends), always at ``:30`` seconds, and moves it on by
whole minutes; code lifetimes are drawn ≡ 30 s (mod 60). So no model instant is ever
within 30 s of a month's end or a code's expiry, and the clock is put back to the
model's time before every step: the few milliseconds a step takes cannot decide anything.

Size: ``MORALBANK_MODEL_EXAMPLES`` sequences of up to ``MORALBANK_MODEL_STEPS`` steps each
(the first step sets up). Without ``CI`` the defaults are 12 × 25 with ``verify()`` every step.
With ``CI`` set they are 122 × 101 with ``verify()`` every 10th step: about 1¼ min on SQLite and
2 min on PostgreSQL on an idle 2-core machine, of which verify() (it reads the whole ledger) is
a third to a half, so ``MORALBANK_MODEL_VERIFY_EVERY=20`` is the knob if the suite needs time.
Hypothesis ends some sequences early on purpose (that is how it explores short ones), so the
steps really run are counted; if they fall short of ``MORALBANK_MODEL_MIN_STEPS`` (10,000 in
CI, also when the size is overridden there) the run is topped up with fresh random sequences,
and the test asserts the floor and that a run that long saw every kind of outcome
(``MUST_HAPPEN``): it cannot shrink, or stop reaching a rule, silently. In CI Hypothesis
derandomizes the first round (10,232 steps now), so it is the same on every run of that code.

The examples share one database, so each one first brings its households to drawn starting
balances and opens a store of its own (a fresh shelf, statement and settlement history).
Commits do not wait for the disk in this test (see ``lazy_commits``).
"""
from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule,
                                 run_state_machine_as_test)
from sqlalchemy import event, select, text

from moralbank.awards import service as awards
from moralbank.database import local_zone, reset_clock, travel, utcnow, write_transaction
from moralbank.errors import DomainError, Invalid
from moralbank.extensions import db
from moralbank.ledger import holds
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, Transfer
from moralbank.ledger.service import AlreadyReversed, IdempotencyConflict, InsufficientPoints
from moralbank.ledger.verify import verify
from moralbank.people.models import Area, Household, RoleGrant, User
from moralbank.people.service import create_user, village_by_code
from moralbank.rankings.models import HouseholdScore
from moralbank.stores import service as stores
from moralbank.stores.models import Item, Store

pytestmark = pytest.mark.slow

IN_CI = bool(os.environ.get("CI"))
EXAMPLES = int(os.environ.get("MORALBANK_MODEL_EXAMPLES", "122" if IN_CI else "12"))
STEPS = int(os.environ.get("MORALBANK_MODEL_STEPS", "101" if IN_CI else "25"))
#: run ``verify()`` after every n-th step (1 = every step). verify reads the whole ledger, which
#: grows with every step; the test's app fixture verifies once more at the end either way.
VERIFY_EVERY = max(1, int(os.environ.get("MORALBANK_MODEL_VERIFY_EVERY", "10" if IN_CI else "1")))
#: the rule steps (not counting each sequence's set-up) the run must have executed
MIN_STEPS = int(os.environ.get("MORALBANK_MODEL_MIN_STEPS", "10000" if IN_CI else "0"))
#: how many of the demo village's households one sequence plays with
HOUSEHOLDS = 3
#: goods on the sequence's store's shelf
ITEMS = 2
COMMITTEE = "13800000001"
PASSWORD = "Model-Run-2026!x"
#: local wall-clock starts (year, month, day, hour, minute; seconds are always 30)
STARTS = ((2030, 1, 15, 12, 0), (2030, 1, 31, 23, 50), (2030, 2, 28, 23, 57), (2030, 12, 31, 23, 55))
#: how far one ``wait`` moves the clock, in minutes
WAITS = (1, 4, 5, 6, 60, 24 * 60, 10 * 24 * 60, 20 * 24 * 60, 31 * 24 * 60, 31 * 24 * 60)
#: payment code lifetimes, in seconds (≡ 30 mod 60: never a whole number of minutes)
TTLS = (90, 330, 3570)
#: a till's cart: (item index, quantity) lines (an item may come twice), extra points, how the code is typed
CARTS = st.lists(st.tuples(st.integers(0, ITEMS - 1), st.integers(1, 2)), max_size=2)
POINTS = st.integers(0, 30).map(lambda points: points or None)
SPELLINGS = st.sampled_from(("number", "spaced", "token"))
#: what each refusal's code answers with
STATUS = {"code_used": 409, "code_expired": 409, "code_replaced": 409, "out_of_stock": 422, "empty_cart": 422,
          "insufficient_points": 422, "period_open": 422, "already_settled": 409, "nothing_to_settle": 422,
          "period_settled": 409, "already_reversed": 409}
#: outcomes a CI-sized run must have seen at least once
MUST_HAPPEN = ("award", "deduction", "spend", "spend refused", "code issued", "redemption",
               "redemption refused: code_used", "redemption refused: code_expired",
               "redemption refused: code_replaced",
               "redemption refused: out_of_stock", "redemption refused: insufficient_points",
               "redemption refused: empty_cart", "restock", "settlement", "settlement refused: period_open",
               "settlement refused: already_settled", "settlement refused: nothing_to_settle", "reversal",
               "reversal refused: already reversed", "reversal refused: is a reversal",
               "reversal refused: settlement", "reversal refused: period_settled", "replay", "key conflict",
               "veto", "veto reversal", "red list",
               "lapse",  # lapse: gov-integrity's expiry steps
               # holds (two-phase transfers)
               "hold", "hold refused", "hold post", "hold void", "post refused: hold_resolved",
               "void refused: hold_resolved", "expire-holds", "reversal refused: hold")


def awards_models():
    """moralbank.awards.models (gov-rules' block reads its Rule)."""
    from moralbank.awards import models
    return models


def month_of(moment: datetime, zone) -> str:
    local = moment.astimezone(zone)
    return f"{local.year}-{local.month:02d}"


def month_back(period: str, months: int) -> str:
    year, month = (int(part) for part in period.split("-"))
    index = year * 12 + month - 1 - months
    return f"{index // 12}-{index % 12 + 1:02d}"


def month_end(period: str, zone) -> datetime:
    year, month = (int(part) for part in month_back(period, -1).split("-"))
    return datetime(year, month, 1, tzinfo=zone)


@dataclass(frozen=True)
class Record:
    """A transfer the machine made, with what it needs to replay, conflict with or reverse it."""

    id: int
    key: str
    debit: int
    credit: int
    amount: int
    code: str
    month: str                          # the local month it was posted in
    reverses: int | None = None
    redemption_id: int | None = None
    settlement_id: int | None = None

    def __repr__(self) -> str:  # short, for Hypothesis' printed steps
        return f"<{self.code} #{self.id} {self.amount} {self.debit}->{self.credit} {self.month}>"


@dataclass(frozen=True)
class AccountRow:
    """What ``ledger.transfer`` reads of an account, as ``household_and_village_account`` gives it
    (a plain row: no ORM object to reload after every commit)."""

    id: int
    village_id: int
    kind: str
    household_id: int | None


@dataclass(frozen=True)
class Posting:
    """A transfer request's answer, read inside its transaction."""

    id: int
    replayed: bool
    shape: tuple                        # (debit, credit, amount, code)


@dataclass(frozen=True)
class HoldRecord:
    """A hold the machine placed (``ledger.holds``)."""

    id: int
    account: int                        # the household account it holds points of
    amount: int
    pending_transfer: int
    expires: datetime

    def __repr__(self) -> str:
        return f"<hold #{self.id} {self.amount} of {self.account}>"


@dataclass(frozen=True)
class Code:
    """A payment code the machine issued."""

    id: int
    number: str
    token: str
    account: int                        # the household account it pays from
    issued: timedelta                   # model time since the sequence's start when it was issued

    def __repr__(self) -> str:
        return f"<code #{self.id} of {self.account} at +{self.issued}>"


class LedgerMachine(RuleBasedStateMachine):
    """The ledger as a village uses it; ``app`` and the logins are set by the test that runs the machine."""

    app = None
    #: what happened, over all examples (``outcomes["spend refused"]`` …), for the test's summary
    outcomes = None
    #: household id -> a resident login of it; the committee login; the hash for new logins
    residents: dict = None
    committee_id: int = None
    password_hash: str = None
    serials = None
    #: seconds spent in the invariants' snapshot and in verify(), for the test's summary
    timings = None
    transfers = Bundle("transfers")
    #: code redemptions, and settlements, as well (so reversing them is tried often, not by luck)
    sales = Bundle("sales")
    settlements_made = Bundle("settlements_made")
    codes = Bundle("codes")
    #: --- gov-rules (issue 14, 一票否决): the postings of veto awards, kept apart from ``transfers``
    #: (their key is the award's, which ``replay`` and ``reuse_key_for_another_amount`` do not make)
    veto_transfers = Bundle("veto_transfers")
    holds_made = Bundle("holds_made")

    def __init__(self):
        super().__init__()
        self._context = self.app.app_context()
        self._context.push()
        reset_clock()
        self.tag = uuid.uuid4().hex[:10]
        self.serial = 0
        self.ready = False
        self.checks = 0
        self.accounts: list[int] = []          # household account ids, by index
        self.household_of: dict[int, int] = {}  # household account id -> household id
        self.resident_of: dict[int, int] = {}   # household account id -> resident login
        self.model: dict[int, int] = {}         # account id -> expected balance
        self.score: dict[tuple, int] = {}       # (household id, period) -> expected score
        self.low_by: dict[int, str] = {}        # household account id -> what took it below zero
        self.reversed: set[int] = set()         # transfer ids already reversed
        self.items: list[int] = []              # item ids, by index
        self.prices: list[int] = []
        self.stock: dict[int, int] = {}         # item id -> expected stock
        self.used: dict[int, bool] = {}         # code id -> used?
        self.latest: dict[int, tuple] = {}      # household account id -> (its newest code id, when issued)
        self.ended: set[int] = set()            # code ids ended by a newer code of their household
        self.sold: dict[int, tuple[str, int]] = {}  # code redemption transfer id -> (month, points)
        self.carts: dict[int, Counter] = {}     # code redemption transfer id -> item id -> quantity taken
        self.settled: dict[str, int] = {}       # month -> settlement id
        self.settlements: dict[int, int] = {}   # settlement id -> points
        self.redemptions = 0                    # redemption rows of the store
        self.new_transfers = 0                  # transfers written since the set-up
        self.reader = None                      # the invariants' connection (PostgreSQL)
        self.veto_awards: dict[int, list] = {}  # household id -> [(posting transfer id, posted at)] (gov-rules)
        self.hold_account = None                # the village's hold account (ledger.holds)
        self.pending_holds: dict[int, HoldRecord] = {}  # hold id -> the hold, while it is pending
        self.placed: set[int] = set()           # every hold id this sequence placed

    def teardown(self):
        try:
            if self.reader is not None:
                self.reader.close()
            db.session.remove()
        finally:
            reset_clock()
            self._context.pop()

    # --- set-up ------------------------------------------------------------------------------

    @initialize(picks=st.lists(st.integers(0, 59), min_size=HOUSEHOLDS, max_size=HOUSEHOLDS, unique=True),
                balances=st.lists(st.integers(-20, 100), min_size=HOUSEHOLDS, max_size=HOUSEHOLDS),
                shelf=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 6)), min_size=ITEMS, max_size=ITEMS),
                start=st.sampled_from(STARTS), ttl=st.sampled_from(TTLS))
    def start(self, picks, balances, shelf, start, ttl):
        """Put the clock at a drawn start, open a store with a drawn shelf and a clerk, and bring the
        picked households to drawn balances by adjustments (which change no score).

        The examples share one database; starting from drawn balances and a fresh store, not
        whatever earlier examples left, makes a sequence of steps replay identically
        (Hypothesis needs that to shrink a failure).
        """
        self.zone = local_zone()
        self.origin = datetime(*start, 30, tzinfo=self.zone).astimezone(timezone.utc)
        self.elapsed = timedelta(0)
        self.ttl = timedelta(seconds=ttl)
        self._sync_clock()
        village = village_by_code("BLM")
        self.village_id = village.id
        households = db.session.scalars(select(Household.id).where(Household.village_id == village.id)
                                        .order_by(Household.id)).all()
        for pick in picks:
            account = ledger.household_account(households[pick])
            self.accounts.append(account.id)
            self.household_of[account.id] = households[pick]
            self.resident_of[account.id] = self.residents[households[pick]]
        self.issuance = ledger.village_account(village.id, "issuance").id
        self.sink = ledger.village_account(village.id, "sink").id
        with write_transaction():
            village = db.session.get(Area, self.village_id)
            village.code_ttl_seconds = ttl
            self.fen_per_point = village.fen_per_point
            store = stores.create_store(village, name=f"模型商店 {self.tag}")
            for number, (points, stock) in enumerate(shelf):
                item = stores.add_item(store, name=f"商品 {number}", points=points, stock=stock)
                self.items.append(item.id)
                self.prices.append(points)
                self.stock[item.id] = stock
            clerk = User(phone=f"1360{next(self.serials):07d}", name="模型店员", password_hash=self.password_hash)
            clerk.grants.append(RoleGrant(role="clerk", area_id=village.id, store_id=store.id, village_id=village.id))
            db.session.add(clerk)
            db.session.flush()
            self.store_id, self.clerk_id = store.id, clerk.id
            self.store = ledger.store_account(store.id).id
            self.hold_account = holds.hold_account(village.id).id
            self.rows = {account.id: AccountRow(account.id, account.village_id, account.kind, account.household_id)
                         for account in db.session.scalars(select(Account).where(
                             Account.id.in_([*self.accounts, self.issuance, self.sink, self.store,
                                             self.hold_account])))}
            for account_id, target in zip(self.accounts, balances):
                diff = target - self._balance(account_id)
                if diff > 0:
                    self._post(self.issuance, account_id, diff, "adjustment", self._key())
                elif diff < 0:
                    self._post(account_id, self.sink, -diff, "adjustment", self._key())
        for account_id in [*self.accounts, self.issuance, self.sink, self.store, self.hold_account]:
            self.model[account_id] = self._balance(account_id)
        for household_id, period, score in db.session.execute(select(
                HouseholdScore.household_id, HouseholdScore.period, HouseholdScore.score).where(
                HouseholdScore.household_id.in_(self.household_of.values()))):
            self.score[household_id, period] = score
        for account_id in self.accounts:
            if self.model[account_id] < 0:
                self.low_by[account_id] = "before"
        floor_transfer = db.session.scalar(text("SELECT COALESCE(MAX(id), 0) FROM transfers"))
        floor_code = db.session.scalar(text("SELECT COALESCE(MAX(id), 0) FROM redemption_codes"))
        db.session.rollback()
        # Everything the invariants read, in one statement (ids are integers from the database).
        ids = ", ".join(str(account_id) for account_id in self.model)
        # The households' and the store's balances recomputed from their transfers (the issuance
        # account and the sink carry the whole village's history: verify() sums those).
        spenders = ", ".join(str(account_id) for account_id in [*self.accounts, self.store])
        household_ids = ", ".join(str(household_id) for household_id in self.household_of.values())
        self.snapshot_sql = " UNION ALL ".join((
            f"SELECT 'a', id, '', balance FROM accounts WHERE id IN ({ids})",
            f"SELECT 'x', a.id, '',"
            f" COALESCE((SELECT SUM(t.amount) FROM transfers t WHERE t.credit_account_id = a.id), 0)"
            f" - COALESCE((SELECT SUM(t.amount) FROM transfers t WHERE t.debit_account_id = a.id), 0)"
            f" FROM accounts a WHERE a.id IN ({spenders})",
            f"SELECT 'v', 0, '', SUM(balance) FROM accounts WHERE village_id = {int(self.village_id)}",
            f"SELECT 's', household_id, period, score FROM household_scores WHERE household_id IN ({household_ids})",
            f"SELECT 'i', id, '', stock FROM items WHERE store_id = {int(self.store_id)}",
            f"SELECT 'c', id, '', CASE WHEN consumed_at IS NULL THEN 0 ELSE 1 END FROM redemption_codes "
            f"WHERE id > {int(floor_code)}",
            f"SELECT 'n', 0, '', COUNT(*) FROM transfers WHERE id > {int(floor_transfer)}",
            f"SELECT 'r', 0, '', COUNT(*) FROM redemptions WHERE store_id = {int(self.store_id)}",
            f"SELECT 'S', id, '', points FROM settlements WHERE store_id = {int(self.store_id)}",
        ))
        # On PostgreSQL the invariants read on a connection of their own in autocommit: one round trip
        # a step, not three (BEGIN, the statement, ROLLBACK). The statement is one snapshot either way.
        if db.engine.dialect.name == "postgresql":
            self.reader = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._start_vetoes()
        self.ready = True

    # --- helpers -----------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        self.outcomes[what] += 1

    def _key(self) -> str:
        self.serial += 1
        return f"model-{self.tag}-{self.serial}"

    def _now(self) -> datetime:
        """The model's time (UTC)."""
        return self.origin + self.elapsed

    def _month(self) -> str:
        return month_of(self._now(), self.zone)

    def _sync_clock(self) -> None:
        """Put the app's clock at the model's time (each step starts there, whatever time steps take)."""
        reset_clock()
        travel(self._now() - utcnow())

    @staticmethod
    def _balance(account_id: int) -> int:
        return db.session.execute(text("SELECT balance FROM accounts WHERE id = :id"),
                                  {"id": account_id}).scalar_one()

    def _post(self, debit: int, credit: int, amount: int, code: str, key: str, reverses: int | None = None,
              redemption_id: int | None = None, settlement_id: int | None = None):
        with write_transaction():
            posted = ledger.transfer(debit=self.rows[debit], credit=self.rows[credit],
                                     amount=amount, code=code, idempotency_key=key, reason="model",
                                     reverses=db.session.get(Transfer, reverses) if reverses else None,
                                     redemption_id=redemption_id, settlement_id=settlement_id)
            return self._posting(posted)

    @staticmethod
    def _posting(posted) -> Posting:
        row = posted.transfer
        return Posting(row.id, posted.replayed, (row.debit_account_id, row.credit_account_id, row.amount, row.code))

    def _move(self, debit: int, credit: int, amount: int, why: str) -> None:
        self.model[debit] -= amount
        self.model[credit] += amount
        self.new_transfers += 1
        for account_id in (debit, credit):
            if account_id in self.household_of:
                if self.model[account_id] >= 0:
                    self.low_by.pop(account_id, None)
                elif account_id == debit:
                    self.low_by[account_id] = why

    def _score(self, account: int, month: str, delta: int) -> None:
        """A household's score moves in the month, its quarter, its year and all time."""
        year, number = month.split("-")
        for period in (month, f"{year}-Q{(int(number) - 1) // 3 + 1}", year, "all"):
            key = (self.household_of[account], period)
            self.score[key] = self.score.get(key, 0) + delta

    def _record(self, posted: Posting, debit, credit, amount, code, key) -> Record:
        assert not posted.replayed, "a new key must post a new transfer"
        assert posted.shape == (debit, credit, amount, code), posted
        return Record(posted.id, key, debit, credit, amount, code, self._month())

    def _refused(self, what: str, refused: DomainError, expected: str | None, context: str) -> None:
        assert refused.code == expected, f"{context}: refused with {refused.code} ({refused}), model: {expected}"
        assert refused.status == STATUS[expected], f"{context}: {refused.code} answered {refused.status}"
        self._count(f"{what} refused: {refused.code}")

    # --- rules: the ledger -------------------------------------------------------------------

    @rule(target=transfers, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 100))
    def award(self, h, amount):
        self._sync_clock()
        account, key = self.accounts[h], self._key()
        posted = self._post(self.issuance, account, amount, "award", key)
        self._count("award")
        self._move(self.issuance, account, amount, "award")
        self._score(account, self._month(), amount)
        return self._record(posted, self.issuance, account, amount, "award", key)

    @rule(target=transfers, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 40))
    def deduct(self, h, amount):
        self._sync_clock()
        account, key = self.accounts[h], self._key()
        posted = self._post(account, self.sink, amount, "deduction", key)
        self._count("deduction")
        self._move(account, self.sink, amount, "deduction")
        self._score(account, self._month(), -amount)
        return self._record(posted, account, self.sink, amount, "deduction", key)

    @rule(target=transfers, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 60))
    def spend(self, h, amount):
        """A bare ledger spend at the store (no redemption record: no statement counts it)."""
        self._sync_clock()
        account, key = self.accounts[h], self._key()
        affordable = self.model[account] >= amount
        try:
            posted = self._post(account, self.store, amount, "redemption", key)
        except InsufficientPoints:
            assert not affordable, f"refused a spend of {amount} from a balance of {self.model[account]}"
            self._count("spend refused")
            return multiple()
        assert affordable, f"allowed a spend of {amount} from a balance of {self.model[account]}"
        self._count("spend")
        self._move(account, self.store, amount, "spend")
        return self._record(posted, account, self.store, amount, "redemption", key)

    @rule(target=transfers, original=transfers)
    def reverse(self, original):
        """The committee's correction of any transfer, by the service the API calls (``reverse_transfer``)."""
        self._sync_clock()
        return self._reverse(original)

    @rule(target=transfers, original=sales)
    def reverse_sale(self, original):
        """A redemption at the till undone: refused once its month is settled."""
        self._sync_clock()
        return self._reverse(original)

    @rule(target=transfers, original=settlements_made)
    def reverse_settlement(self, original):
        """A settlement is money paid: never reversed."""
        self._sync_clock()
        return self._reverse(original)

    def _reverse(self, original: Record):
        if original.code == "settlement":
            expected = "not_reversible", 409
        elif original.code == "redemption" and original.month in self.settled:
            expected = "period_settled", 409
        elif original.code == "reversal":
            expected = "not_reversible", 422
        elif original.id in self.reversed:
            expected = "already_reversed", 409
        else:
            expected = None
        key = self._key()
        try:
            with write_transaction():
                reversal = awards.reverse_transfer(db.session.get(User, self.committee_id), original.id,
                                                   "model reversal", idempotency_key=key)
                row = (reversal.id, reversal.debit_account_id, reversal.credit_account_id, reversal.amount,
                       reversal.code, reversal.reverses_id)
        except DomainError as refused:
            assert (refused.code, refused.status) == expected, f"reversing {original}: {refused!r}, model: {expected}"
            if isinstance(refused, AlreadyReversed):
                assert original.id in self.reversed
            what = {"period_settled": "period_settled", "already_reversed": "already reversed"}.get(refused.code)
            if what is None:
                what = "settlement" if original.code == "settlement" else "is a reversal"
                assert isinstance(refused, Invalid) == (original.code == "reversal")
            self._count(f"reversal refused: {what}")
            return multiple()
        assert expected is None, f"reversed {original} though the model expected {expected}"
        assert row[1:] == (original.credit, original.debit, original.amount, "reversal", original.id), row
        self.reversed.add(original.id)
        # A reversed redemption puts back on the shelf what it took.
        for item_id, quantity in self.carts.get(original.id, {}).items():
            self.stock[item_id] += quantity
        self._count("reversal")
        # The opposite transfer: the original's credit account gives the amount back.
        self._move(original.credit, original.debit, original.amount, "reversal")
        # A reversal takes back the original's score in the original's periods.
        if original.code == "award":
            self._score(original.credit, original.month, -original.amount)
        elif original.code == "deduction":
            self._score(original.debit, original.month, original.amount)
        return Record(row[0], key, original.credit, original.debit, original.amount, "reversal", self._month(),
                      reverses=original.id, redemption_id=original.redemption_id,
                      settlement_id=original.settlement_id)

    @rule(earlier=transfers)
    def replay(self, earlier):
        """The same request again (a retry, a double tap): the first answer, and nothing moves."""
        self._sync_clock()
        if earlier.code == "reversal":
            with write_transaction():
                posted = self._posting(ledger.reverse(db.session.get(Transfer, earlier.reverses),
                                                      reason="model reversal", idempotency_key=earlier.key))
        else:
            posted = self._post(earlier.debit, earlier.credit, earlier.amount, earlier.code, earlier.key,
                                redemption_id=earlier.redemption_id, settlement_id=earlier.settlement_id)
        assert posted.replayed and posted.id == earlier.id, (earlier, posted)
        self._count("replay")

    @rule(earlier=transfers, extra=st.integers(1, 5))
    def reuse_key_for_another_amount(self, earlier, extra):
        """Another request under a used key is refused with 409 and changes nothing."""
        self._sync_clock()
        try:
            self._post(earlier.debit, earlier.credit, earlier.amount + extra, earlier.code, earlier.key,
                       reverses=earlier.reverses, redemption_id=earlier.redemption_id,
                       settlement_id=earlier.settlement_id)
        except IdempotencyConflict as refused:
            assert refused.status == 409
            self._count("key conflict")
        else:
            raise AssertionError(f"key {earlier.key} of {earlier} accepted a different amount")

    # --- rules: the shop ---------------------------------------------------------------------

    def _issue(self, account: int) -> Code:
        with write_transaction():
            issued = stores.issue_code(db.session.get(User, self.resident_of[account]))
            record = issued.record
            code = Code(record.id, record.code, issued.token, account, self.elapsed)
            assert record.household_id == self.household_of[account] and record.consumed_at is None
            assert abs(record.expires_at - (self._now() + self.ttl)) < timedelta(seconds=30), record.expires_at
        self.used[code.id] = False
        if account in self.latest:  # issue_code ends the household's earlier code if it is still open
            previous, issued = self.latest[account]
            if not self.used[previous] and self.elapsed - issued < self.ttl:
                self.ended.add(previous)
        self.latest[account] = (code.id, self.elapsed)
        return code

    @precondition(lambda self: sum(not used for used in self.used.values()) < 4)
    @rule(target=codes, h=st.integers(0, HOUSEHOLDS - 1))
    def issue_code(self, h):
        """A resident asks for a payment code (``issue_code``, as the app and the API do), to show it
        later (or never): a few are kept open at a time."""
        self._sync_clock()
        code = self._issue(self.accounts[h])
        self._count("code issued")
        return code

    @rule(targets=(transfers, sales), code=codes, cart=CARTS, points=POINTS, spelling=SPELLINGS)
    def redeem(self, code, cart, points, spelling):
        """The clerk redeems an earlier code (maybe used or expired by now) for goods and/or points."""
        self._sync_clock()
        return self._redeem(code, cart, points, spelling)

    @rule(targets=(transfers, sales), h=st.integers(0, HOUSEHOLDS - 1), cart=CARTS, points=POINTS, spelling=SPELLINGS)
    def shop(self, h, cart, points, spelling):
        """At the till: the resident shows a fresh code and the clerk redeems it at once."""
        self._sync_clock()
        return self._redeem(self._issue(self.accounts[h]), cart, points, spelling)

    def _redeem(self, code: Code, cart, points, spelling):
        """``redeem_with_code`` as the clerk's till calls it, against what the model expects."""
        account = code.account
        wanted = Counter()
        for index, quantity in cart:
            wanted[index] += quantity
        total = sum(self.prices[index] * quantity for index, quantity in wanted.items()) + (points or 0)
        if self.used[code.id]:
            expected = "code_used"
        elif code.id in self.ended:
            expected = "code_replaced"
        elif self.elapsed - code.issued >= self.ttl:
            expected = "code_expired"
        elif any(self.stock[self.items[index]] < quantity for index, quantity in wanted.items()):
            expected = "out_of_stock"
        elif total == 0:
            expected = "empty_cart"
        elif self.model[account] < total:
            expected = "insufficient_points"
        else:
            expected = None
        typed = {"number": code.number, "spaced": f"{code.number[:4]} {code.number[4:]}", "token": code.token}
        context = f"redeeming {code} for {cart} + {points} = {total} at +{self.elapsed} " \
                  f"(balance {self.model[account]})"
        try:
            with write_transaction():
                redemption = stores.redeem_with_code(
                    db.session.get(User, self.clerk_id), db.session.get(Store, self.store_id), typed[spelling],
                    items=[(self.items[index], quantity) for index, quantity in cart], points=points)
                paid = (redemption.id, redemption.household_id, redemption.points)
                lines = sorted((line.item_id, line.quantity, line.unit_points) for line in redemption.lines)
                posted = db.session.execute(select(
                    Transfer.id, Transfer.debit_account_id, Transfer.credit_account_id, Transfer.amount,
                    Transfer.created_at).where(Transfer.redemption_id == redemption.id,
                                               Transfer.code == "redemption")).one()
        except DomainError as refused:
            self._refused("redemption", refused, expected, context)
            return multiple()
        assert expected is None, f"{context}: accepted, model: {expected}"
        assert paid[1:] == (self.household_of[account], total), (context, paid)
        assert lines == sorted((self.items[index], quantity, self.prices[index])
                               for index, quantity in wanted.items()), (context, lines)
        assert posted[1:4] == (account, self.store, total), (context, posted)
        assert month_of(posted.created_at, self.zone) == self._month(), (context, posted.created_at)
        self._count("redemption")
        self._move(account, self.store, total, "redemption")
        for index, quantity in wanted.items():
            self.stock[self.items[index]] -= quantity
        self.used[code.id] = True
        self.sold[posted.id] = (self._month(), total)
        self.carts[posted.id] = Counter({self.items[index]: quantity for index, quantity in wanted.items()})
        self.redemptions += 1
        return Record(posted.id, f"redemption:{paid[0]}", account, self.store, total, "redemption", self._month(),
                      redemption_id=paid[0])

    @precondition(lambda self: min(self.stock.values(), default=0) < 2)
    @rule(index=st.integers(0, ITEMS - 1), stock=st.integers(0, 8))
    def restock(self, index, stock):
        """The clerk counts the shelf when it runs low (``update_item``: clerks may change stock only)."""
        self._sync_clock()
        with write_transaction():
            item = db.session.get(Item, self.items[index])
            stores.update_item(db.session.get(User, self.clerk_id), item, stock=stock)
        self.stock[self.items[index]] = stock
        self._count("restock")

    @precondition(lambda self: self.sold or not all(self.used.values()))
    @rule(minutes=st.sampled_from(WAITS))
    def wait(self, minutes):
        """Time passes: open codes expire, months with sales end."""
        self.elapsed += timedelta(minutes=minutes)
        self._count("wait")

    @precondition(lambda self: self.sold)
    @rule(targets=(transfers, settlements_made), pick=st.integers(0, 5))
    def settle(self, pick):
        """The committee pays the store for a month (``settle``): one it sold in, this month or the last."""
        self._sync_clock()
        months = sorted({month for month, _points in self.sold.values()}
                        | {self._month(), month_back(self._month(), 1)})
        return self._settle(months[pick % len(months)])

    def _owed_months(self) -> list[str]:
        """Months that are over, not settled, with something owed: what a committee settles."""
        return sorted({month for transfer_id, (month, _points) in self.sold.items()
                       if transfer_id not in self.reversed and month not in self.settled
                       and month_end(month, self.zone) <= self._now()})

    @precondition(lambda self: self._owed_months())
    @rule(targets=(transfers, settlements_made), pick=st.integers(0, 5))
    def settle_owed(self, pick):
        """The committee pays the store for a finished month it owes for (so that settled months, and
        reversals refused because of them, happen often, not by luck of the draw)."""
        self._sync_clock()
        months = self._owed_months()
        return self._settle(months[pick % len(months)])

    def _settle(self, period: str):
        owed = sum(points for transfer_id, (month, points) in self.sold.items()
                   if month == period and transfer_id not in self.reversed)
        if month_end(period, self.zone) > self._now():
            expected = "period_open"
        elif period in self.settled:
            expected = "already_settled"
        elif owed <= 0:
            expected = "nothing_to_settle"
        elif self.model[self.store] < owed:
            expected = "insufficient_points"
        else:
            expected = None
        context = f"settling {period} (owed {owed}) at {self._now().astimezone(self.zone):%Y-%m-%d %H:%M}"
        try:
            with write_transaction():
                settlement = stores.settle(db.session.get(User, self.committee_id),
                                           db.session.get(Store, self.store_id), period)
                settled = (settlement.id, settlement.period, settlement.points, settlement.amount_fen)
                posted = db.session.execute(select(
                    Transfer.id, Transfer.debit_account_id, Transfer.credit_account_id, Transfer.amount,
                    Transfer.code, Transfer.idempotency_key).where(Transfer.settlement_id == settlement.id)).one()
        except DomainError as refused:
            self._refused("settlement", refused, expected, context)
            return multiple()
        assert expected is None, f"{context}: accepted, model: {expected}"
        assert settled[1:] == (period, owed, owed * self.fen_per_point), (context, settled)
        assert posted[1:5] == (self.store, self.issuance, owed, "settlement"), (context, posted)
        self._count("settlement")
        self._move(self.store, self.issuance, owed, "settlement")
        self.settled[period] = settled[0]
        self.settlements[settled[0]] = owed
        return Record(posted.id, posted.idempotency_key, self.store, self.issuance, owed, "settlement",
                      self._month(), settlement_id=settled[0])

    # --- gov-rules (issue 14): 一票否决 ------------------------------------------------------------
    # Veto awards posted and reversed; the invariant compares who is vetoed, their stars and the red
    # list with the model. (gov-integrity's expiry and offline's holds have blocks of their own.)

    def _start_vetoes(self) -> None:
        """The village's veto item, and the veto awards earlier examples left on the picked households
        (the examples share one database; the model starts from what is there)."""
        from moralbank.awards.models import Award, AwardStatus, Rule
        self.veto_rule_id = db.session.scalar(select(Rule.id).where(
            Rule.village_id == self.village_id, Rule.veto.is_(True), Rule.active.is_(True)).order_by(Rule.id))
        assert self.veto_rule_id is not None, "the demo has veto items"
        reversed_ids = select(Transfer.reverses_id).where(Transfer.reverses_id.is_not(None))
        for household_id, transfer_id, posted_at in db.session.execute(
                select(Award.household_id, Transfer.id, Award.posted_at)
                .join(Rule, Rule.id == Award.rule_id).join(Transfer, Transfer.award_id == Award.id)
                .where(Award.household_id.in_(self.household_of.values()), Rule.veto.is_(True),
                       Award.status == AwardStatus.POSTED, Transfer.code == "deduction",
                       Transfer.id.not_in(reversed_ids))):
            self.veto_awards.setdefault(household_id, []).append((transfer_id, posted_at))
        db.session.rollback()

    def _vetoed(self, before: datetime | None = None) -> set[int]:
        """The model's vetoed households: an unreversed veto award posted in this veto period (the year),
        ``before`` a moment if given (a ranking period's end: postings after it do not touch it; only
        earlier examples, whose clock ran later, leave such postings)."""
        from moralbank import periods
        year = periods.containing("year", self._now())
        return {household_id for household_id, postings in self.veto_awards.items()
                if any(transfer_id not in self.reversed and periods.containing("year", posted_at) == year
                       and (before is None or posted_at < before) for transfer_id, posted_at in postings)}

    @rule(target=veto_transfers, h=st.integers(0, HOUSEHOLDS - 1))
    def veto_award(self, h):
        """An award under the veto item, decided and posted (``record_award``, as paper records are)."""
        self._sync_clock()
        account = self.accounts[h]
        with write_transaction():
            rule_row = db.session.get(awards_models().Rule, self.veto_rule_id)
            household_row = db.session.get(Household, self.household_of[account])
            posted = awards.record_award(household_row, rule_row,
                                         approver=db.session.get(User, self.committee_id))
            transfer = awards.award_transfer(posted)
            row = (transfer.id, transfer.debit_account_id, transfer.credit_account_id, transfer.amount,
                   transfer.code, posted.posted_at, posted.id)
        amount = -rule_row.points
        assert row[1:5] == (account, self.sink, amount, "deduction"), row
        self._count("veto")
        self.new_transfers += 1
        self.model[account] -= amount
        self.model[self.sink] += amount
        if self.model[account] < 0:
            self.low_by[account] = "deduction"
        self._score(account, self._month(), -amount)
        self.veto_awards.setdefault(self.household_of[account], []).append((row[0], row[5]))
        return Record(row[0], f"award:{row[6]}", account, self.sink, amount, "deduction", self._month())

    @rule(target=transfers, original=veto_transfers)
    def reverse_veto(self, original):
        """The committee reverses a veto award's posting: the veto lifts."""
        self._sync_clock()
        done = self._reverse(original)
        if original.id in self.reversed and not isinstance(done, type(multiple())):
            self._count("veto reversal")
        return done

    @rule()
    def publish_red_list(self):
        """The committee publishes this month's red list: no vetoed household is on it."""
        from moralbank.rankings import service as rankings
        from moralbank import periods
        self._sync_clock()
        vetoed = self._vetoed(before=periods.bounds(periods.current_month())[1])
        try:
            with write_transaction():
                snapshot = rankings.publish(db.session.get(User, self.committee_id),
                                            db.session.get(Area, self.village_id), periods.current_month())
                listed = {entry.household_id for entry in rankings.snapshot_entries(snapshot)}
        except DomainError as refused:
            assert refused.code == "empty_ranking", refused
            self._count("red list refused: empty")
            return
        assert not listed & vetoed, f"vetoed households {listed & vetoed} on the red list"
        self._count("red list")

    @invariant()
    def vetoed_exactly_as_the_model_says(self):
        if not self.ready:
            return
        from moralbank.awards import vetoes
        from moralbank.rankings.households import household_summary
        self._sync_clock()  # a ``wait`` moved the model's time, not yet the app's
        expected = self._vetoed()
        found = set(vetoes.vetoed_in(db.session.get(Area, self.village_id))) & set(self.household_of.values())
        assert found == expected, (f"vetoed {found}, model {expected} at {self._now()}: "
                                   f"{vetoes.vetoed_in(db.session.get(Area, self.village_id))}, {self.veto_awards}")
        for household_id in expected:
            summary = household_summary(db.session.get(Household, household_id))
            assert summary["stars"] == 0 and summary["veto"] is not None, summary
        db.session.rollback()

    # --- end of gov-rules ------------------------------------------------------------------------
    # === holds: two-phase transfers (pending, post, void; expire-holds) ====================
    # A hold takes points from a household into the village's hold account (refused like a spend
    # when the household cannot cover it); it ends exactly once: posted for 1 … its amount (the
    # hold returns to the household and the household pays the store, so only what was taken
    # leaves), voided (all returns), or voided by expire-holds once past its expiry. A second
    # ending is refused with hold_resolved and moves nothing; hold transfers are never reversed.

    def _holds_ready(self) -> bool:
        return self.ready and self.hold_account is not None

    @precondition(lambda self: self._holds_ready())
    @rule(target=holds_made, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 60),
          minutes=st.sampled_from((5, 24 * 60, 10 * 24 * 60)))
    def hold(self, h, amount, minutes):
        self._sync_clock()
        account = self.accounts[h]
        affordable = self.model[account] >= amount
        try:
            with write_transaction():
                made = holds.place(self.household_of[account], amount, idempotency_key=self._key(),
                                   expires_at=self._now() + timedelta(minutes=minutes), reason="model hold")
                found = HoldRecord(made.id, account, amount, made.pending_transfer_id, self._now()
                                   + timedelta(minutes=minutes))
        except InsufficientPoints:
            assert not affordable, f"refused a hold of {amount} from a balance of {self.model[account]}"
            self._count("hold refused")
            return multiple()
        assert affordable, f"allowed a hold of {amount} from a balance of {self.model[account]}"
        self._count("hold")
        self._move(account, self.hold_account, amount, "hold")
        self.pending_holds[found.id] = found
        self.placed.add(found.id)
        return found

    def _end_hold(self, record: HoldRecord, how: str, paid: int = 0) -> None:
        """Post (paying ``paid``) or void a hold through ``ledger.holds``; the model's expectation checked."""
        expected_open = record.id in self.pending_holds
        try:
            with write_transaction():
                hold = db.session.get(holds.Hold, record.id)
                if how == "post":
                    holds.post(hold, paid, credit=self.rows[self.store], reason="model post")
                else:
                    holds.void(hold, reason="model void")
        except holds.HoldResolved as refused:
            assert not expected_open and refused.status == 409, f"{how} of {record}: refused, model: open"
            self._count(f"{how} refused: hold_resolved")
            return
        assert expected_open, f"{how} of {record} accepted though the model had it resolved"
        del self.pending_holds[record.id]
        before = self.low_by.get(record.account)
        self._move(self.hold_account, record.account, record.amount, f"hold {how}")
        if how == "post":
            self._move(record.account, self.store, paid, "hold post")
            if self.model[record.account] < 0:
                # Paid from points held for it: never lower than the balance before the post.
                self.low_by[record.account] = before
        self._count(f"hold {how}")

    @rule(record=holds_made, share=st.integers(1, 4))
    def post_hold(self, record, share):
        self._sync_clock()
        self._end_hold(record, "post", paid=max(1, record.amount * share // 4))

    @rule(record=holds_made)
    def void_hold(self, record):
        self._sync_clock()
        self._end_hold(record, "void")

    @precondition(lambda self: self.pending_holds)
    @rule(minutes=st.sampled_from((6, 24 * 60 + 1, 10 * 24 * 60 + 1)))
    def wait_for_holds(self, minutes):
        """Time passes while holds are pending (some of them expire)."""
        self.elapsed += timedelta(minutes=minutes)
        self._count("wait")

    @precondition(lambda self: self.pending_holds)
    @rule()
    def expire_holds(self):
        """What ``flask ledger expire-holds`` does, for this sequence's holds (the holds other sequences
        sharing the database left pending are theirs)."""
        self._sync_clock()
        due = [hold.id for hold in holds.expired_pending(utcnow(), limit=100_000) if hold.id in self.placed]
        db.session.rollback()
        expected = sorted(hold_id for hold_id, record in self.pending_holds.items() if record.expires <= self._now())
        assert sorted(due) == expected, (due, expected)
        for hold_id in due:
            self._end_hold(self.pending_holds[hold_id], "void")
        self._count("expire-holds" if due else "expire-holds: none due")

    @rule(record=holds_made)
    def reverse_hold_transfer(self, record):
        """A hold's pending transfer is never reversed (it ends by its post or void)."""
        self._sync_clock()
        try:
            with write_transaction():
                awards.reverse_transfer(db.session.get(User, self.committee_id), record.pending_transfer,
                                        "model reversal", idempotency_key=self._key())
        except DomainError as refused:
            assert (refused.code, refused.status) == ("not_reversible", 409), refused
            self._count("reversal refused: hold")
            return
        raise AssertionError(f"reversed the pending transfer of {record}")

    # === end of holds ===========================================================================

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def database_agrees_with_the_model(self):
        if not self.ready:
            return
        started = time.perf_counter()
        if self.reader is not None:
            rows = self.reader.exec_driver_sql(self.snapshot_sql).all()
            self.reader.rollback()
        else:
            rows = db.session.connection().exec_driver_sql(self.snapshot_sql).all()
            db.session.rollback()
        self.timings["snapshot"] += time.perf_counter() - started
        found: dict[str, dict] = {kind: {} for kind in "axvsicnrS"}
        for kind, key, period, value in rows:
            found[kind][(int(key), period) if kind == "s" else int(key)] = int(value)
        assert found["a"] == self.model, "balances"
        assert found["x"] == {account_id: self.model[account_id] for account_id in found["x"]} \
            and len(found["x"]) == HOUSEHOLDS + 1, "balances recomputed from the transfers"
        assert found["v"] == {0: 0}, f"the village's balances sum to {found['v']}"
        assert {key: found["s"].get(key, 0) for key in {*found["s"], *self.score}} \
            == {key: self.score.get(key, 0) for key in {*found["s"], *self.score}}, "scores"
        assert found["i"] == self.stock, "stock"
        assert found["c"] == {code: int(used) for code, used in self.used.items()}, "codes used"
        assert found["n"] == {0: self.new_transfers}, "transfers written"
        assert found["r"] == {0: self.redemptions}, "redemptions of the store"
        assert found["S"] == self.settlements, "settlements of the store"

    @invariant()
    def only_deductions_and_reversals_go_below_zero(self):
        if not self.ready:
            return
        for account_id in self.accounts:
            if self.model[account_id] < 0:
                assert self.low_by.get(account_id) in ("before", "deduction", "reversal"), \
                    f"household account {account_id} at {self.model[account_id]} by {self.low_by.get(account_id)}"
        assert all(stock >= 0 for stock in self.stock.values())

    @invariant()
    def verify_is_clean(self):
        if not self.ready:
            return
        self.checks += 1
        if (self.checks - 1) % VERIFY_EVERY:
            return
        started = time.perf_counter()
        report = verify()
        db.session.rollback()
        self.timings["verify"] += time.perf_counter() - started
        self.timings["verify calls"] += 1
        assert report.ok, report.discrepancies


    # --- expiry (gov-integrity: point expiry by village policy) -------------------------------------
    # Time advances by ``wait``; ``lapse`` sets the village's expiry setting and runs what
    # ``flask ledger expire`` runs for the sequence's households, twice (the second must write
    # nothing). The model moves what lapsed from each household to the sink and leaves the
    # scores alone, so ``database_agrees_with_the_model`` checks that expiry never changes a
    # score; ``lots_add_up`` checks the lots after every step.

    @rule(policy=st.sampled_from(({"mode": "months", "months": 1}, {"mode": "months", "months": 2},
                                  {"mode": "annual", "on": "12-31"}, {"mode": "annual", "on": "01-31"})))
    def lapse(self, policy):
        from moralbank import periods
        from moralbank.awards.expiry import expire_household, lapse_day
        from moralbank.ledger.expiry import book_of

        with write_transaction():
            db.session.get(Area, self.village_id).expiry = policy
        village = db.session.get(Area, self.village_id)
        today = periods.today(self._now())
        for account_id in self.accounts:
            due = sum(lot.left for lot in book_of(account_id).open_lots()
                      if lapse_day(policy, lot.dated) < today)
            for attempt in range(2):
                with write_transaction():
                    done = expire_household(village, policy, account_id, self.household_of[account_id], "model",
                                            today, self._now())
                if attempt:
                    assert all(lapse.replayed for lapse in done), "a second run lapsed again"
                    continue
                assert sum(lapse.points for lapse in done) == due, (policy, due, done)
                for lapse in done:
                    self._move(account_id, self.sink, lapse.points, "expiry")
                    self._count("lapse")
            assert all(lapse_day(policy, lot.dated) >= today for lot in book_of(account_id).open_lots())
        db.session.rollback()

    @invariant()
    def lots_add_up(self):
        if not self.ready:
            return
        from moralbank.ledger.expiry import book_of, check_book

        for account_id in self.accounts:
            book = book_of(account_id)
            assert check_book(book, self.model[account_id]) == [], check_book(book, self.model[account_id])
            assert all(lot.left >= 0 for lot in book.lots.values())
            assert book.held == max(self.model[account_id], 0)
        db.session.rollback()
    # --- end of expiry ----------------------------------------------------------------------------


@pytest.fixture
def app_config(tmp_path):
    """The app of this module: no ``pool_pre_ping`` (a ping before every transaction is a round trip
    more on PostgreSQL for each step; the test's connections do not go stale)."""
    return {"UPLOAD_FOLDER": str(tmp_path / "uploads"), "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False}}


def lazy_commits(app) -> None:
    """Commits that do not wait for the disk, on this test's connections only: the model checks what
    the services do, not durability (tests/test_crash.py does), and a step is about one commit, so
    on a busy disk the flush would be most of the run. SQLite keeps WAL with ``synchronous=NORMAL``
    (still consistent after a crash, the last commits may be lost); PostgreSQL gets
    ``synchronous_commit = off`` (the same, server-side). Nothing else about a transaction changes."""
    with app.app_context():
        engine = db.engine
        engine.dispose()

        @event.listens_for(engine, "connect")
        def _lazy(dbapi_connection, connection_record):
            if engine.dialect.name == "sqlite":
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            elif engine.dialect.name == "postgresql":
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SET synchronous_commit TO off")
                dbapi_connection.commit()


def make_logins(app) -> tuple[dict[int, int], int, str]:
    """A resident login for every household of BLM (the first by ``create_user``, the others with its
    password hash: one argon2 hash, not sixty), and the demo committee's id."""
    with app.app_context():
        with write_transaction():
            village = village_by_code("BLM")
            households = db.session.scalars(select(Household).where(Household.village_id == village.id)
                                            .order_by(Household.id)).all()
            first = create_user(phone="13700000000", name="模型村民", password=PASSWORD, role="resident",
                                household=households[0])
            logins = {households[0].id: first}
            for number, household in enumerate(households[1:], start=1):
                login = User(phone=f"1370{number:07d}", name="模型村民", password_hash=first.password_hash)
                login.grants.append(RoleGrant(role="resident", area_id=village.id, household_id=household.id,
                                              village_id=village.id))
                db.session.add(login)
                logins[household.id] = login
            db.session.flush()
            residents = {household_id: login.id for household_id, login in logins.items()}
            committee = db.session.scalar(select(User.id).where(User.phone == COMMITTEE))
            password_hash = first.password_hash
        db.session.remove()
    return residents, committee, password_hash


def run_machine(machine, examples: int, **overrides) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large, HealthCheck.large_base_example], **overrides))


def test_ledger_agrees_with_its_model(app):
    outcomes, timings = Counter(), Counter()
    lazy_commits(app)
    residents, committee, password_hash = make_logins(app)
    machine = type("BoundLedgerMachine", (LedgerMachine,), {
        "app": app, "outcomes": outcomes, "residents": residents, "committee_id": committee,
        "password_hash": password_hash, "serials": itertools.count(1), "timings": timings})
    started = time.monotonic()
    rounds = []
    try:
        run_machine(machine, EXAMPLES)
        rounds.append(EXAMPLES)
        # Hypothesis ends some sequences early by design, and how many depends on its version: top
        # the run up with fresh (random) sequences until the floor is reached.
        while sum(outcomes.values()) < MIN_STEPS and len(rounds) < 4:
            more = math.ceil((MIN_STEPS - sum(outcomes.values())) * 1.25 / max(1, STEPS - 1)) + 1
            run_machine(machine, more, derandomize=False, database=None)
            rounds.append(more)
    finally:
        reset_clock()
    steps, seconds = sum(outcomes.values()), time.monotonic() - started
    print(f"\nledger model: {steps} steps in {' + '.join(map(str, rounds))} examples of up to {STEPS} "
          f"in {seconds:.1f} s; snapshots {timings['snapshot']:.1f} s, "
          f"{timings['verify calls']} verify() {timings['verify']:.1f} s:", dict(sorted(outcomes.items())))
    # The machine really exercised the ledger (a rule that always bailed out would pass vacuously).
    assert outcomes["award"] + outcomes["deduction"] + outcomes["spend"] > 0
    # The CI profile's size is a floor, not a wish: fewer steps fail here instead of passing
    # quietly; and a run that long must have seen every outcome.
    assert steps >= MIN_STEPS, f"only {steps} steps ran, {MIN_STEPS} required"
    if MIN_STEPS >= 10_000:
        missing = [what for what in MUST_HAPPEN if not outcomes[what]]
        assert not missing, f"never happened in {steps} steps: {missing}"
