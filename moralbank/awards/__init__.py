"""The rule catalogue (积分清单) and the award life cycle.

Importing the package registers the 一票否决 spending check with the stores (``stores.guards``):
a vetoed household's redemption is refused where its village says so; and the lots check of point
expiry with ``ledger.verify`` (through ``ledger.hooks``; ``create_app`` imports every domain).
"""
from ..ledger import hooks as _ledger_hooks
from ..stores import guards as _store_guards
from . import expiry as _expiry
from . import vetoes as _vetoes

_store_guards.spending_check(_vetoes.check_spending)
_ledger_hooks.verify_check(_expiry.verify_lots)
