"""What keeps the ledger ignorant of the domains without letting their caches drift:
``ledger.hooks`` (posting hooks and verify checks the rankings register), and the password-guess
counter ``create_app`` hands to ``people.auth``.

A hook that is not registered must not go unnoticed: ``create_app`` registers them (checked in a
fresh interpreter, where nothing else imported the rankings), and a posting without the scores'
hook is caught by ``verify``.
"""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from sqlalchemy import func, select

from moralbank.database import write_transaction
from moralbank.extensions import db
from moralbank.ledger import hooks
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, Transfer
from moralbank.ledger.verify import verify
from moralbank.people import auth
from moralbank.people.models import Household
from moralbank.people.service import village_by_code
from moralbank.rankings import scores


def _household() -> Household:
    village = village_by_code("BLM")
    return db.session.scalars(select(Household).where(Household.village_id == village.id)
                              .order_by(Household.id)).first()


def _award(household: Household, amount: int = 7, key: str | None = None):
    """Post ``amount`` award points to ``household`` (issuance → household), as the awards do."""
    with write_transaction():
        return ledger.transfer(debit=ledger.village_account(household.village_id, "issuance"),
                               credit=ledger.household_account(household.id), amount=amount, code="award",
                               idempotency_key=key or f"hooks-{uuid.uuid4().hex}", reason="test")


def test_create_app_registers_the_scores_settlements_and_the_guess_counter_in_a_fresh_interpreter(tmp_path):
    program = f"""
from moralbank.ledger import hooks, service
from moralbank.people import auth
assert hooks.posting_hooks() == () and hooks.verify_checks() == (), "registered before create_app"
assert auth._reserve_guess is None
from moralbank import create_app
create_app({{"SQLALCHEMY_DATABASE_URI": "sqlite:///{tmp_path / 'x.db'}", "SECRET_KEY": "x" * 32,
            "TESTING": True, "RATELIMIT_STORAGE_URI": "memory://"}})
from moralbank import throttle
from moralbank.rankings import scores
from moralbank.stores import settled
from moralbank.awards import expiry
from moralbank import metrics
assert set(hooks.posting_hooks()) == {{scores.apply_transfer, metrics._transfer_posted}}, hooks.posting_hooks()
from moralbank.ledger import holds
assert set(hooks.verify_checks()) == {{scores.verify_scores, settled.verify_settlements, expiry.verify_lots,
                                      holds.check_holds}}, \
    hooks.verify_checks()
assert auth._reserve_guess is throttle.password_guess
print("registered")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "registered"


def test_registering_twice_registers_once(ctx):
    before = hooks.posting_hooks(), hooks.verify_checks()
    hooks.on_posted(scores.apply_transfer)
    hooks.verify_check(scores.verify_scores)
    assert (hooks.posting_hooks(), hooks.verify_checks()) == before


def test_an_award_posted_without_the_scores_hook_is_caught_by_verify(ctx, monkeypatch):
    household = _household()
    monkeypatch.setattr(hooks, "_posting_hooks", [])
    posted = _award(household, 7)
    db.session.rollback()
    report = verify()
    assert not report.ok
    assert all(line.startswith(f"household {household.id} period ") for line in report.discrepancies), \
        report.discrepancies
    assert len(report.discrepancies) == 4, report.discrepancies  # month, quarter, year, all

    # The scores' hook, run by hand, is exactly what was missing: the ledger verifies clean again.
    with write_transaction():
        transfer = db.session.get(Transfer, posted.transfer.id)
        scores.apply_transfer(transfer, debit=db.session.get(Account, transfer.debit_account_id),
                              credit=db.session.get(Account, transfer.credit_account_id))
    db.session.rollback()
    assert verify().ok, verify().discrepancies


def test_a_posting_hook_runs_in_the_posting_transaction(ctx, monkeypatch):
    """A hook that raises refuses the transfer: nothing of it commits, balances included."""
    household = _household()
    balance = ledger.household_account(household.id).balance
    transfers = db.session.scalar(select(func.count()).select_from(Transfer))

    def refuse(transfer, *, debit, credit):
        raise RuntimeError("refused by the hook")

    monkeypatch.setattr(hooks, "_posting_hooks", [*hooks.posting_hooks(), refuse])
    with pytest.raises(RuntimeError, match="refused by the hook"):
        _award(household, 5)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Transfer)) == transfers
    assert ledger.household_account(household.id).balance == balance


def test_passwords_are_not_checked_without_a_guess_counter(ctx, monkeypatch):
    """No counter registered (an app not made by create_app): fail closed, not an open door."""
    from support import DEMO_PASSWORD, PHONES

    monkeypatch.setattr(auth, "_reserve_guess", None)
    with pytest.raises(RuntimeError, match="no password guess counter"):
        auth.authenticate(PHONES["resident"], DEMO_PASSWORD)
