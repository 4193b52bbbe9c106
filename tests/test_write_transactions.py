"""One transaction rule: the edge (view, API wrapper, CLI) opens ``write_transaction()``; a
service that writes refuses to run without one (``OutsideTransaction``, which ``python -O``
does not strip as it would an ``assert``), and changes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from moralbank.awards import service as awards
from moralbank.awards.models import Award
from moralbank.database import OutsideTransaction, write_transaction
from moralbank.extensions import db
from moralbank.ledger import service as ledger
from moralbank.people.models import Household, User
from moralbank.people.service import village_by_code
from moralbank.stores import service as stores
from moralbank.stores.models import Store
from support import PHONES, session_of


def user(phone_of: str) -> User:
    return db.session.scalar(select(User).where(User.phone == PHONES[phone_of]))


def test_redeem_outside_a_transaction_is_refused_and_moves_nothing(app):
    with session_of(app) as session:
        clerk = user("clerk")
        store = session.get(Store, stores.clerk_store(clerk).id)
        household_id = min(g.household_id for g in user("resident").grants if g.role == "resident")
        before = stores.balance_of(household_id), ledger.store_account(store.id).balance
        household = session.get(Household, household_id)
        with pytest.raises(OutsideTransaction):
            stores.redeem(household, store, points=1, clerk=clerk)
        session.rollback()
        assert (stores.balance_of(household_id), ledger.store_account(store.id).balance) == before


def test_approve_outside_a_transaction_is_refused_and_the_award_stays_proposed(app):
    with session_of(app) as session:
        village = village_by_code("BLM")
        household_id = min(g.household_id for g in user("resident").grants if g.role == "resident")
        with write_transaction():
            rule = awards.create_rule(village, category="volunteer", title="事务规则测试", points=2)
            award_id = awards.propose(user("grid"), awards.Proposal(household_id=household_id, rule_id=rule.id)).id
        with pytest.raises(OutsideTransaction):
            awards.approve(user("committee"), award_id)
        session.rollback()
        assert session.get(Award, award_id, populate_existing=True).status == "proposed"


def test_unlocking_a_card_inside_a_callers_transaction_is_refused(app):
    """A wrong PIN is counted in the card's own commit; inside a caller's transaction a rollback
    would undo the count, so the service refuses to run there."""
    with session_of(app) as session:
        clerk = user("clerk")
        store = session.get(Store, stores.clerk_store(clerk).id)
        with pytest.raises(RuntimeError, match="outside write_transaction"):
            with write_transaction():
                stores.unlock_card(clerk, store, "any-card-token", "000000")
