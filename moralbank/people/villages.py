"""A village's own settings (notice days, code lifetime, approval threshold, star thresholds, point expiry),
changed by its committee: one service that the API and the web pages both call."""
from __future__ import annotations

from datetime import date

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

#: point expiry: the modes of the ``expiry`` setting, and the range of ``months``
EXPIRY_MODES = ("none", "annual", "months")
EXPIRY_MONTHS = (1, 120)
NO_EXPIRY = {"mode": "none"}


def expiry_policy(village: Area) -> dict:
    """The village's ``expiry`` setting, ``{"mode": "none"}`` when it has none."""
    return dict(village.expiry or NO_EXPIRY)


def _expiry_problem(value) -> str | None:
    """Why ``value`` is not an expiry setting (None if it is one)."""
    if not isinstance(value, dict) or value.get("mode") not in EXPIRY_MODES:
        return _("应为不清零、每年清零（带日期）或按月数清零")
    mode = value["mode"]
    allowed = {"none": {"mode"}, "annual": {"mode", "on"}, "months": {"mode", "months"}}[mode]
    if set(value) != allowed:
        return _("每年清零需要日期（如 12-31），按月清零需要月数")
    if mode == "annual":
        on = value["on"]
        try:
            valid = (isinstance(on, str) and len(on) == 5 and on[2] == "-" and on.replace("-", "").isdigit()
                     and on != "02-29" and date(2025, int(on[:2]), int(on[3:])) is not None)
        except ValueError:
            valid = False
        if not valid:
            return _("清零日期应为 月-日，如 12-31（不能是 02-29）")
    if mode == "months":
        months = value["months"]
        if isinstance(months, bool) or not isinstance(months, int) or not (
                EXPIRY_MONTHS[0] <= months <= EXPIRY_MONTHS[1]):
            return _("月数应为 %(low)s 到 %(high)s 的整数", low=EXPIRY_MONTHS[0], high=EXPIRY_MONTHS[1])
    return None


def settings_of(village: Area) -> dict:
    """The settings of ``village`` as the API and the settings page show them."""
    return {"code": village.code, "name": village.name, "town": village.parent.name if village.parent else None,
            "hamlets": [{"id": h.id, "code": h.code, "name": h.name} for h in village.children],
            "notice_days": village.notice_days, "code_ttl_seconds": village.code_ttl_seconds,
            "approval_threshold": village.approval_threshold, "star_thresholds": village.star_thresholds,
            "rule_changes_need_meeting": village.rule_changes_need_meeting, "veto_period": village.veto_period,
            "veto_blocks_redemption": village.veto_blocks_redemption,
            "veto_hides_ranking": village.veto_hides_ranking,
            "expiry": expiry_policy(village)}


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
        elif key == "expiry":
            problem = _expiry_problem(value)
            if problem:
                fields[key] = [problem]
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
    before = {key: (expiry_policy(village) if key == "expiry" else getattr(village, key)) for key in changes}
    for key, value in changes.items():
        setattr(village, key, value)
    audit("village.settings", actor=actor, village_id=village.id, target=village,
          detail={"before": before, "after": changes})
    return village
