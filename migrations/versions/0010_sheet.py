"""inspection sheet: evidence photos kept as soon as they are taken

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 08:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('evidence_photos',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_evidence_photos_uploaded_by_id_users')),
    sa.ForeignKeyConstraint(['village_id'], ['areas.id'], name=op.f('fk_evidence_photos_village_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence_photos'))
    )
    with op.batch_alter_table('evidence_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_photos_village_id'), ['village_id'], unique=False)


def downgrade():
    with op.batch_alter_table('evidence_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_photos_village_id'))
    op.drop_table('evidence_photos')
