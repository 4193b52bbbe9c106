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
