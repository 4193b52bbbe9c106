"""The resident's pages: the home page's figures, the household's ledger lines and members
(routes of the ``board`` blueprint)."""
from __future__ import annotations

from flask import render_template, request
from flask_login import login_required

from .. import periods
from ..awards import expiry
from ..people.villages import expiry_policy
from ..extensions import db
from ..people.models import Area, Household
from ..rankings.households import household_summary, transfer_history
from ..rankings import service as rankings
from .board import bp
from .forms import bounded_int, resident_household


def chart_bars(values: list[tuple[str, int]], width: int = 300, height: int | None = None) -> dict:
    """Geometry of a small bar chart (server-side SVG, no JavaScript): one row per period, its name
    on the left, the bar, and the value written at the bar's end. The SVG is drawn about as wide as
    it shows on a 320–360 px phone, so its 18-unit type stays at least 14 px there."""
    from datetime import date

    from flask_babel import format_date

    row, label_width, value_width = 28, 58, 52
    top = max([v for _k, v in values] + [1])
    bottom = min([v for _k, v in values] + [0])
    span = top - bottom or 1
    room = width - label_width - value_width
    zero = label_width + room * -bottom / span
    bars = []
    for index, (key, value) in enumerate(values):
        length = room * abs(value) / span
        x = zero - length if value < 0 else zero
        y = index * row + 4
        if len(key) == 7 and key[4] == "-":  # a month: 12月 / Dec
            label = format_date(date(int(key[:4]), int(key[5:]), 1), "MMM")
        else:
            label = key
        bars.append({"x": round(x, 1), "y": y, "w": round(max(length, 0.5), 1), "h": row - 8, "value": value,
                     "label": label, "negative": value < 0, "ty": y + (row - 8) // 2,
                     "vx": round(zero + length + 4 if value >= 0 else zero + 4, 1)})
    return {"width": width, "height": row * len(values), "zero": round(zero, 1), "bars": bars}


def resident_home_context(household: Household) -> dict:
    """What a resident sees first: balance, this month's score and rank, stars, a chart."""
    village = db.session.get(Area, household.village_id)
    month = periods.current_month()
    rank, month_score, ranked = rankings.rank_of(household, month)
    hamlet_rank, _score, hamlet_ranked = rankings.rank_of(household, month, in_hamlet=True)
    return {"household": household_summary(household), "village": village, "month_label": periods.label(month),
            "month_score": month_score, "rank": rank, "ranked": ranked, "hamlet_rank": hamlet_rank,
            "hamlet_ranked": hamlet_ranked, "chart": chart_bars(rankings.monthly_scores(household, 12)),
            "history": transfer_history(household, limit=5)[0],
            "expiring_soon": expiry.expiring(household, within_days=expiry.WARN_DAYS),
            "expiry_policy": expiry_policy(village)}


@bp.get("/me/history")
@login_required
def history():
    """Every ledger line of the household, newest first, with the rule and reason."""
    household = resident_household()
    lines, cursor = transfer_history(household, before=request.args.get("before", type=bounded_int), limit=20)
    return render_template("resident/history.html", lines=lines, cursor=cursor,
                           household=household_summary(household))


@bp.get("/me/household")
@login_required
def members():
    household = resident_household()
    return render_template("resident/members.html", household=household_summary(household))
