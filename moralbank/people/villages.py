"""A village's own settings (notice days, code lifetime, approval threshold, star thresholds),
changed by its committee: one service that the API and the web pages both call."""
from __future__ import annotations

from flask_babel import gettext as _

from ..audit.service import record as audit
from ..database import require_write_transaction
from ..errors import Invalid
from . import access
from .models import Area, User

#: each setting a committee may change, with its allowed range (inclusive)
RANGES = {"notice_days": (0, 30), "code_ttl_seconds": (30, 3600), "approval_threshold": (0, 10000)}
STAR_RANGE = (1, 1_000_000)
STAR_COUNTS = (5, 10)
#: governance settings (issue 14): on/off settings, and the veto period's kinds (see ``periods``)
FLAGS = ("rule_changes_need_meeting", "veto_blocks_redemption", "veto_hides_ranking")
VETO_PERIODS = ("month", "quarter", "year")


def settings_of(village: Area) -> dict:
    """The settings of ``village`` as the API and the settings page show them."""
    return {"code": village.code, "name": village.name, "town": village.parent.name if village.parent else None,
            "hamlets": [{"id": h.id, "code": h.code, "name": h.name} for h in village.children],
            "notice_days": village.notice_days, "code_ttl_seconds": village.code_ttl_seconds,
            "approval_threshold": village.approval_threshold, "star_thresholds": village.star_thresholds,
            "rule_changes_need_meeting": village.rule_changes_need_meeting, "veto_period": village.veto_period,
            "veto_blocks_redemption": village.veto_blocks_redemption,
            "veto_hides_ranking": village.veto_hides_ranking}


def _problems(changes: dict) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, value in changes.items():
        if key in RANGES:
            low, high = RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                fields[key] = [_("应为 %(low)s 到 %(high)s 的整数", low=low, high=high)]
        elif key == "star_thresholds":
            ok = (isinstance(value, list) and len(value) in STAR_COUNTS
                  and all(isinstance(v, int) and not isinstance(v, bool) and STAR_RANGE[0] <= v <= STAR_RANGE[1]
                          for v in value))
            if not ok:
                fields[key] = [_("应为 5 个（或十星制 10 个）%(low)s 到 %(high)s 的整数",
                                 low=STAR_RANGE[0], high=STAR_RANGE[1])]
            elif value != sorted(set(value)):
                fields[key] = [_("应从小到大且不重复")]
        elif key in FLAGS:
            if value is not True and value is not False:
                fields[key] = [_("应为是或否")]
        elif key == "veto_period":
            if value not in VETO_PERIODS:
                fields[key] = [_("应为月、季度或年")]
        else:
            fields[key] = [_("不能修改")]
    return fields


def change_settings(actor: User, village: Area, changes: dict) -> Area:
    """The committee changes some of its village's settings; all or nothing, audited with the
    values before and after. Runs inside the caller's write transaction."""
    require_write_transaction()
    access.require(access.is_committee(actor, village), _("只有村委会可以修改本村设置"))
    problems = _problems(changes)
    if problems:
        raise Invalid(_("设置有误，请按提示修改"), fields=problems)
    before = {key: getattr(village, key) for key in changes}
    for key, value in changes.items():
        setattr(village, key, value)
    audit("village.settings", actor=actor, village_id=village.id, target=village,
          detail={"before": before, "after": changes})
    return village
