"""The rule catalogue (积分清单) and the award life cycle.

Importing the package registers the lots check of point expiry with ``ledger.verify`` (through
``ledger.hooks``; ``create_app`` imports every domain).
"""
from ..ledger import hooks as _ledger_hooks
from . import expiry as _expiry

_ledger_hooks.verify_check(_expiry.verify_lots)
