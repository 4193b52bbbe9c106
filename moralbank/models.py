"""Imports every model so the metadata (and Alembic) sees all tables."""
from .audit.models import AuditEntry  # noqa: F401
from .awards.models import Award, Objection, Rule  # noqa: F401
from .ledger.holds import Hold  # noqa: F401
from .ledger.models import Account, Transfer  # noqa: F401
from .people.models import ApiToken, Area, Household, Resident, RoleGrant, User  # noqa: F401
from .rankings.models import HouseholdScore, RankingSnapshot, RankingSnapshotEntry  # noqa: F401
from .stores.models import (HouseholdCard, Item, Redemption, RedemptionCode, RedemptionLine,  # noqa: F401
                            Settlement, Store)
from .stores.offline_models import OfflineConflict, OfflineKey, OfflineVoucher  # noqa: F401
from .idempotency import IdempotencyRecord  # noqa: F401
from .people.kinships import Kinship  # noqa: F401
