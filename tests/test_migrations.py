"""Migrations are the only way the schema is made: they run from empty (every test's template),
down and up again over real data, and they match the models exactly."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from moralbank.extensions import db
from moralbank.ledger.verify import verify


def test_models_and_migrations_agree(app):
    with app.app_context():
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        db.session.remove()
    assert diff == [], f"the models differ from the migrations; run `flask db migrate`: {diff}"


def test_downgrade_and_upgrade_over_the_demo_data_keep_the_ledger(app):
    with app.app_context():
        before = verify()
        db.session.remove()  # verify's reads hold locks an ALTER TABLE would wait on (PostgreSQL)
        downgrade(revision="0002")
        upgrade()
        db.session.remove()
        after = verify()
        assert after.ok, after.discrepancies
        assert (after.transfers, after.accounts) == (before.transfers, before.accounts)
        # The append-only triggers are still in force after the tables around them were rebuilt.
        with pytest.raises(DBAPIError):
            with db.engine.begin() as connection:
                connection.execute(text("UPDATE transfers SET amount = amount + 1"))
        db.session.remove()


def test_the_database_holds_award_statuses_to_the_enum(app):
    """The CHECK on awards.status is built from AwardStatus: the migrated database takes every
    status the enum names and refuses any other (so a new status cannot slip in without a migration)."""
    from sqlalchemy.exc import IntegrityError

    from moralbank.awards.models import AwardStatus

    with app.app_context():
        with db.engine.connect() as connection:
            outer = connection.begin()
            award_id = connection.scalar(text("SELECT min(id) FROM awards"))
            for status in [*AwardStatus, "bogus"]:
                savepoint = connection.begin_nested()
                try:
                    connection.execute(text("UPDATE awards SET status = :status WHERE id = :id"),
                                       {"status": status, "id": award_id})
                    accepted = True
                except IntegrityError:
                    accepted = False
                savepoint.rollback()
                assert accepted == (status in list(AwardStatus)), status
            outer.rollback()
        db.session.remove()
