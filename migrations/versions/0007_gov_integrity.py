"""favouritism checks and point expiry: kinships (人情分 declarations) and the village's expiry setting

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 08:20:00

Lots (which points lapse when) need no table: they are derived from the transfers
(``moralbank/ledger/expiry.py``).
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('kinships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=False),
    sa.Column('relation', sa.String(length=16), nullable=False),
    sa.Column('declared_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['declared_by_id'], ['users.id'], name=op.f('fk_kinships_declared_by_id_users')),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_kinships_household_id_households')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_kinships_user_id_users')),
    sa.ForeignKeyConstraint(['village_id'], ['areas.id'], name=op.f('fk_kinships_village_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kinships')),
    sa.UniqueConstraint('user_id', 'household_id', name='uq_kinships_user_household')
    )
    with op.batch_alter_table('kinships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kinships_village_id'), ['village_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kinships_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kinships_household_id'), ['household_id'], unique=False)

    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.drop_column('expiry')
    with op.batch_alter_table('kinships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kinships_household_id'))
        batch_op.drop_index(batch_op.f('ix_kinships_user_id'))
        batch_op.drop_index(batch_op.f('ix_kinships_village_id'))
    op.drop_table('kinships')
