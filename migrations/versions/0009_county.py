"""county: village_id on the two growing tables that lacked it (redemption_lines,
ranking_snapshot_entries), filled from their parent row, NOT NULL and indexed — so every table that
grows can be distributed by village_id (Citus, docs/scale.md)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 08:40:00

ranking_snapshot_entries is append-only (0004's triggers refuse UPDATE): the triggers are dropped for
the fill and made again, on SQLite after the batch rebuild (which would drop them anyway).
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

#: (table, its parent table, the column naming the parent)
TABLES = (("redemption_lines", "redemptions", "redemption_id"),
          ("ranking_snapshot_entries", "ranking_snapshots", "snapshot_id"))
FROZEN = "ranking_snapshot_entries"


def _frozen_triggers(create: bool):
    """0004's append-only triggers on ranking_snapshot_entries (the same text)."""
    dialect = op.get_bind().dialect.name
    table = FROZEN
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            if create:
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb.lower()}")
    elif dialect == "postgresql":
        if create:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION moralbank_refuse_change()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")


def upgrade():
    _frozen_triggers(create=False)
    for table, parent, column in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('village_id', sa.Integer(), nullable=True))
        op.execute(f"UPDATE {table} SET village_id = (SELECT {parent}.village_id FROM {parent} "
                   f"WHERE {parent}.id = {table}.{column})")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('village_id', existing_type=sa.Integer(), nullable=False)
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_village_id_areas'), 'areas', ['village_id'], ['id'])
            batch_op.create_index(batch_op.f(f'ix_{table}_village_id'), ['village_id'], unique=False)
    _frozen_triggers(create=True)


def downgrade():
    _frozen_triggers(create=False)
    for table, _parent, _column in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_village_id'))
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_village_id_areas'), type_='foreignkey')
            batch_op.drop_column('village_id')
    _frozen_triggers(create=True)
