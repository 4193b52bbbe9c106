"""speed: the balance after a redemption stored on it; a per-village board version for ETags

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('balance_after', sa.Integer(), nullable=True))
    op.create_table('board_versions',
    sa.Column('village_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['village_id'], ['areas.id'], name=op.f('fk_board_versions_village_id_areas')),
    sa.PrimaryKeyConstraint('village_id', name=op.f('pk_board_versions'))
    )


def downgrade():
    op.drop_table('board_versions')
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_column('balance_after')
