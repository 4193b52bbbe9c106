"""Corrections: the committee reverses a posted transfer (an award, a deduction or a redemption)
by its opposite; and what the award pages need to show whether an award's posting was reversed."""
from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from ..audit.service import record as audit
from ..database import require_write_transaction
from ..errors import Conflict, NotFound
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import Transfer
from ..people import access
from ..people.models import Area, User
from .models import Award
from .posting import forget_posted, posted_in_this_transaction


def reverse_transfer(actor: User, transfer_id: int, reason: str, *, idempotency_key: str) -> Transfer:
    """Committee correction of a posted transfer by its opposite; a transfer is reversed once (409).

    A retry under the same key replays the reversal, even once the month has been settled since.
    """
    require_write_transaction()
    original = db.session.get(Transfer, transfer_id)
    if original is None:
        raise NotFound(_("找不到这笔积分"))
    village = db.session.get(Area, original.village_id)
    access.require(access.is_committee(actor, village), _("只有村委会可以冲正"))
    posted = ledger.reverse(original, actor=actor, reason=reason, idempotency_key=idempotency_key,
                            prepare=_check_reversible)
    if original.award_id is not None and posted_in_this_transaction(original.award_id) is original:
        forget_posted(original.award_id)  # reversed in the transaction that posted it
    if not posted.replayed:
        audit("ledger.reverse", actor=actor, village_id=village.id, target=original,
              detail={"reason": reason, "amount": original.amount, "reversal_id": posted.transfer.id})
    return posted.transfer


def _check_reversible(original: Transfer) -> None:
    """Settlements are money already paid: they are not reversed. A redemption is the store's to
    undo (``prepare_reversal``): not once its month is settled, and its goods go back on the shelf."""
    from ..stores.settled import prepare_reversal

    if original.code == "settlement":
        raise Conflict(_("结算记录不能冲正"), code="not_reversible")
    if original.code in ("pending", "post", "void"):
        # A hold ends by its post or void, exactly once (ledger.holds); the redemption a post paid is reversible.
        raise Conflict(_("离线券冻结和退回的记录不能冲正"), code="not_reversible")
    if original.code == "redemption":
        prepare_reversal(original)


def award_transfer(award: Award) -> Transfer | None:
    """The transfer that posted the award (None until posted)."""
    fresh = posted_in_this_transaction(award.id)
    if fresh is not None:
        return fresh
    return db.session.scalar(select(Transfer).where(Transfer.award_id == award.id,
                                                    Transfer.code.in_(("award", "deduction"))))


def is_reversed(transfer: Transfer | None) -> bool:
    if transfer is None:
        return False
    if posted_in_this_transaction(transfer.award_id) is transfer:
        return False  # posted in this very transaction: nothing has reversed it yet
    return db.session.scalar(select(Transfer.id).where(Transfer.reverses_id == transfer.id)) is not None
