"""The ledger against a model: Hypothesis drives random sequences of awards,
deductions, spends, reversals, replays and key conflicts over a few households
of the demo village, and after every step the database must agree with a plain
Python model of what each account should hold.

Invariants after every step:

* every tracked cached balance equals the model (so every refusal changed nothing,
  and every replay moved nothing);
* a household below zero got there by a deduction or a reversal (or already was), never by spending;
* the village's balances sum to zero;
* the households' all-time scores equal the model (spending never changes them);
* ``verify()`` finds nothing (every ``MORALBANK_MODEL_VERIFY_EVERY``-th step; default every step).

Size: ``MORALBANK_MODEL_EXAMPLES`` sequences of up to ``MORALBANK_MODEL_STEPS``
steps each (defaults 12 × 25, under a minute on either engine); a CI profile can
ask for e.g. 200 × 60 (≥ 10,000 steps), with ``MORALBANK_MODEL_VERIFY_EVERY=10``
to keep the whole-ledger ``verify()`` from dominating. The examples share one
database, so each one first brings its households to drawn starting balances.
"""
from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule,
                                 run_state_machine_as_test)
from sqlalchemy import func, select, text

from moralbank.database import write_transaction
from moralbank.errors import Invalid
from moralbank.extensions import db
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, Transfer
from moralbank.ledger.service import AlreadyReversed, IdempotencyConflict, InsufficientPoints
from moralbank.ledger.verify import verify
from moralbank.people.models import Household
from moralbank.people.service import village_by_code
from moralbank.rankings.models import HouseholdScore
from moralbank.stores.models import Store

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("MORALBANK_MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("MORALBANK_MODEL_STEPS", "25"))
#: run ``verify()`` after every n-th step (1 = every step). verify reads the whole ledger, which
#: grows with every step, so a 10,000-step CI run may want e.g. 10; the test's app fixture
#: verifies once more at the end either way.
VERIFY_EVERY = max(1, int(os.environ.get("MORALBANK_MODEL_VERIFY_EVERY", "1")))
#: how many of the demo village's households one sequence plays with
HOUSEHOLDS = 3


@dataclass(frozen=True)
class Record:
    """A transfer the machine made, with what it needs to replay, conflict with or reverse it."""

    id: int
    key: str
    debit: int
    credit: int
    amount: int
    code: str
    reverses: int | None = None

    def __repr__(self) -> str:  # short, for Hypothesis' printed steps
        return f"<{self.code} #{self.id} {self.amount} {self.debit}->{self.credit}>"


class LedgerMachine(RuleBasedStateMachine):
    """The ledger as a village uses it; ``app`` is set by the test that runs the machine."""

    app = None
    #: what happened, over all examples (``outcomes["spend refused"]`` …), for the test's summary
    outcomes = None
    transfers = Bundle("transfers")

    def __init__(self):
        super().__init__()
        self._context = self.app.app_context()
        self._context.push()
        self.tag = uuid.uuid4().hex[:10]
        self.serial = 0
        self.ready = False
        self.checks = 0
        self.accounts: list[int] = []          # household account ids, by index
        self.household_of: dict[int, int] = {}  # household account id -> household id
        self.model: dict[int, int] = {}         # account id -> expected balance
        self.score: dict[int, int] = {}         # household id -> expected all-time score
        self.low_by: dict[int, str] = {}        # household account id -> what took it below zero
        self.reversed: set[int] = set()         # transfer ids already reversed

    def teardown(self):
        try:
            db.session.remove()
        finally:
            self._context.pop()

    # --- set-up ------------------------------------------------------------------------------

    @initialize(picks=st.lists(st.integers(0, 59), min_size=HOUSEHOLDS, max_size=HOUSEHOLDS, unique=True),
                balances=st.lists(st.integers(-20, 100), min_size=HOUSEHOLDS, max_size=HOUSEHOLDS),
                store_pick=st.integers(0, 1))
    def start(self, picks, balances, store_pick):
        """Pick households and bring them to drawn balances by adjustments (which change no score).

        The examples share one database; starting from drawn balances, not whatever
        earlier examples left, makes a sequence of steps replay identically (Hypothesis
        needs that to shrink a failure).
        """
        village = village_by_code("BLM")
        self.village_id = village.id
        households = db.session.scalars(select(Household.id).where(Household.village_id == village.id)
                                        .order_by(Household.id)).all()
        stores = db.session.scalars(select(Store.id).where(Store.village_id == village.id)
                                    .order_by(Store.id)).all()
        for pick in picks:
            account = ledger.household_account(households[pick])
            self.accounts.append(account.id)
            self.household_of[account.id] = households[pick]
        self.issuance = ledger.village_account(village.id, "issuance").id
        self.sink = ledger.village_account(village.id, "sink").id
        self.store = ledger.store_account(stores[store_pick % len(stores)]).id
        db.session.rollback()
        for account_id, target in zip(self.accounts, balances):
            diff = target - self._balance(account_id)
            if diff > 0:
                self._post(self.issuance, account_id, diff, "adjustment", self._key())
            elif diff < 0:
                self._post(account_id, self.sink, -diff, "adjustment", self._key())
        for account_id in [*self.accounts, self.issuance, self.sink, self.store]:
            self.model[account_id] = self._balance(account_id)
        for account_id in self.accounts:
            household_id = self.household_of[account_id]
            self.score[household_id] = self._score(household_id)
            if self.model[account_id] < 0:
                self.low_by[account_id] = "before"
        db.session.rollback()
        self.ready = True

    # --- helpers -----------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        self.outcomes[what] += 1

    def _key(self) -> str:
        self.serial += 1
        return f"model-{self.tag}-{self.serial}"

    @staticmethod
    def _balance(account_id: int) -> int:
        return db.session.execute(text("SELECT balance FROM accounts WHERE id = :id"),
                                  {"id": account_id}).scalar_one()

    @staticmethod
    def _score(household_id: int) -> int:
        return db.session.scalar(select(HouseholdScore.score).where(
            HouseholdScore.household_id == household_id, HouseholdScore.period == "all")) or 0

    def _post(self, debit: int, credit: int, amount: int, code: str, key: str, reverses: int | None = None):
        with write_transaction():
            return ledger.transfer(debit=db.session.get(Account, debit), credit=db.session.get(Account, credit),
                                   amount=amount, code=code, idempotency_key=key, reason="model",
                                   reverses=db.session.get(Transfer, reverses) if reverses else None)

    def _move(self, debit: int, credit: int, amount: int, why: str) -> None:
        self.model[debit] -= amount
        self.model[credit] += amount
        for account_id in (debit, credit):
            if account_id in self.household_of:
                if self.model[account_id] >= 0:
                    self.low_by.pop(account_id, None)
                elif account_id == debit:
                    self.low_by[account_id] = why

    def _record(self, posted, debit, credit, amount, code, key, reverses=None) -> Record:
        assert not posted.replayed, "a new key must post a new transfer"
        row = posted.transfer
        assert (row.debit_account_id, row.credit_account_id, row.amount, row.code) == (debit, credit, amount, code)
        return Record(row.id, key, debit, credit, amount, code, reverses)

    # --- rules -------------------------------------------------------------------------------

    @rule(target=transfers, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 40))
    def award(self, h, amount):
        account, key = self.accounts[h], self._key()
        posted = self._post(self.issuance, account, amount, "award", key)
        self._count("award")
        self._move(self.issuance, account, amount, "award")
        self.score[self.household_of[account]] += amount
        return self._record(posted, self.issuance, account, amount, "award", key)

    @rule(target=transfers, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 40))
    def deduct(self, h, amount):
        account, key = self.accounts[h], self._key()
        posted = self._post(account, self.sink, amount, "deduction", key)
        self._count("deduction")
        self._move(account, self.sink, amount, "deduction")
        self.score[self.household_of[account]] -= amount
        return self._record(posted, account, self.sink, amount, "deduction", key)

    @rule(target=transfers, h=st.integers(0, HOUSEHOLDS - 1), amount=st.integers(1, 60))
    def spend(self, h, amount):
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
        key = self._key()
        try:
            with write_transaction():
                posted = ledger.reverse(db.session.get(Transfer, original.id), reason="model reversal",
                                        idempotency_key=key)
        except AlreadyReversed as refused:
            assert original.id in self.reversed, f"{original} was not reversed yet: {refused}"
            assert refused.status == 409
            self._count("reversal refused: already reversed")
            return multiple()
        except Invalid as refused:
            assert original.code == "reversal" and refused.code == "not_reversible", refused
            self._count("reversal refused: is a reversal")
            return multiple()
        assert original.code != "reversal", "a reversal was reversed"
        assert original.id not in self.reversed, f"{original} was reversed twice"
        self.reversed.add(original.id)
        self._count("reversal")
        # The opposite transfer: the original's credit account gives the amount back.
        self._move(original.credit, original.debit, original.amount, "reversal")
        if original.code == "award":
            self.score[self.household_of[original.credit]] -= original.amount
        elif original.code == "deduction":
            self.score[self.household_of[original.debit]] += original.amount
        return self._record(posted, original.credit, original.debit, original.amount, "reversal", key,
                            reverses=original.id)

    @rule(earlier=transfers)
    def replay(self, earlier):
        """The same request again (a retry, a double tap): the first answer, and nothing moves."""
        if earlier.code == "reversal":
            with write_transaction():
                posted = ledger.reverse(db.session.get(Transfer, earlier.reverses), reason="model reversal",
                                        idempotency_key=earlier.key)
        else:
            posted = self._post(earlier.debit, earlier.credit, earlier.amount, earlier.code, earlier.key)
        assert posted.replayed and posted.transfer.id == earlier.id
        self._count("replay")

    @rule(earlier=transfers, extra=st.integers(1, 5))
    def reuse_key_for_another_amount(self, earlier, extra):
        """Another request under a used key is refused with 409 and changes nothing."""
        try:
            self._post(earlier.debit, earlier.credit, earlier.amount + extra, earlier.code, earlier.key,
                       reverses=earlier.reverses)
        except IdempotencyConflict as refused:
            assert refused.status == 409
            self._count("key conflict")
        else:
            raise AssertionError(f"key {earlier.key} of {earlier} accepted a different amount")

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self):
        if not self.ready:
            return
        actual = {account_id: self._balance(account_id) for account_id in self.model}
        db.session.rollback()
        assert actual == self.model

    @invariant()
    def only_deductions_and_reversals_go_below_zero(self):
        if not self.ready:
            return
        for account_id in self.accounts:
            if self.model[account_id] < 0:
                assert self.low_by.get(account_id) in ("before", "deduction", "reversal"), \
                    f"household account {account_id} at {self.model[account_id]} by {self.low_by.get(account_id)}"

    @invariant()
    def the_village_sums_to_zero(self):
        if not self.ready:
            return
        total = db.session.scalar(select(func.sum(Account.balance)).where(Account.village_id == self.village_id))
        db.session.rollback()
        assert total == 0

    @invariant()
    def scores_match_the_model(self):
        if not self.ready:
            return
        actual = {household_id: self._score(household_id) for household_id in self.score}
        db.session.rollback()
        assert actual == self.score

    @invariant()
    def verify_is_clean(self):
        if not self.ready:
            return
        self.checks += 1
        if (self.checks - 1) % VERIFY_EVERY:
            return
        report = verify()
        db.session.rollback()
        assert report.ok, report.discrepancies


def test_ledger_agrees_with_its_model(app):
    outcomes = Counter()
    machine = type("BoundLedgerMachine", (LedgerMachine,), {"app": app, "outcomes": outcomes})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    print(f"ledger model: {sum(outcomes.values())} steps in {EXAMPLES} examples:", dict(sorted(outcomes.items())))
    # The machine really exercised the ledger (a rule that always bailed out would pass vacuously).
    assert outcomes["award"] + outcomes["deduction"] + outcomes["spend"] > 0
