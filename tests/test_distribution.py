"""The path past one server stays open (docs/scale.md): every table that grows carries a non-null,
indexed ``village_id``, so Citus can distribute it by village (and a village's rows stay together).
Read from the migrated database itself, so a migration that forgets it fails here; a new table must
either carry it or be listed below with the reason it does not grow with a village's activity."""
from __future__ import annotations

from sqlalchemy import inspect

from moralbank.extensions import db

#: tables without a non-null village_id, and why (on Citus: reference tables, copied to every node,
#: or local tables on the coordinator)
EXCLUDED = {
    "areas": "the county's places (county, towns, villages, hamlets): small and static; a reference table",
    "users": "logins, one per person, county-wide (a supervisor spans villages); grows with people, "
             "not activity; a reference table",
    "role_grants": "a few per user; village_id is NULL for town- and county-wide grants; a reference table",
    "api_tokens": "per user, looked up by token hash on every API request whatever the village; expired "
                  "rows can be deleted; stays on the coordinator",
    "idempotency_records": "per (user, key) replay records, claimed before the request's village is known; "
                           "needed only for minutes (retries), so they can be pruned; stays on the coordinator",
    "audit_log": "village_id is NULL for county-wide events (logins, failed logins, CLI jobs such as "
                 "ledger.verify); append-only and read by time; on Citus a time-partitioned table on "
                 "the coordinator",
    "alembic_version": "the schema's revision",
}


def _indexed(inspector, table: str) -> bool:
    """An index, a unique constraint or the primary key whose first column is village_id."""
    leading = [index["column_names"][:1] for index in inspector.get_indexes(table)]
    leading += [unique["column_names"][:1] for unique in inspector.get_unique_constraints(table)]
    leading.append(inspector.get_pk_constraint(table)["constrained_columns"][:1])
    return ["village_id"] in leading


def test_every_growing_table_has_a_non_null_indexed_village_id(empty_app):
    with empty_app.app_context():
        inspector = inspect(db.engine)
        tables = set(inspector.get_table_names())
        assert set(db.metadata.tables) <= tables
        assert set(EXCLUDED) <= tables, "an excluded table no longer exists: drop it from EXCLUDED"
        missing = []
        for table in sorted(tables - set(EXCLUDED)):
            columns = {column["name"]: column for column in inspector.get_columns(table)}
            if "village_id" not in columns:
                missing.append(f"{table}: no village_id")
            elif columns["village_id"]["nullable"]:
                missing.append(f"{table}: village_id may be NULL")
            elif not _indexed(inspector, table):
                missing.append(f"{table}: village_id is not the first column of any index")
        db.session.remove()
    assert not missing, missing
