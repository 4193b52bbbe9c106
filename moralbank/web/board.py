"""The public board (/v/<code>), published rankings and their print view, the resident's pages,
dashboards for the committee and supervisors, and exports."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import periods
from ..awards import service as awards
from ..awards.models import CATEGORIES
from ..database import write_transaction
from ..errors import DomainError
from ..extensions import db
from ..people import access
from ..people.models import Area, Household
from ..people.queries import household_summary, transfer_history
from ..people.service import village_by_code
from ..rankings import exports
from ..rankings import service as rankings
from ..rankings.models import RankingSnapshot
from .forms import bounded_int, new_form_key, submit_once

bp = Blueprint("board", __name__)


def _period_choices() -> list[tuple[str, str]]:
    return [(key, periods.label(key)) for key in periods.current().values()]


# --- the public board ------------------------------------------------------------------------

@bp.get("/v/<code>")
def public_board(code):
    """积分榜: ranking by period and hamlet, the red list, notices in progress. No login, names masked."""
    village = village_by_code(code)
    period = request.args.get("period") or periods.current_month()
    hamlet = request.args.get("hamlet", type=bounded_int)
    try:
        lines = rankings.ranking(village, period, hamlet_id=hamlet, limit=100)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("board.public_board", code=village.code))
    published = rankings.snapshots(village, limit=5)
    red_list = rankings.snapshot_entries(published[0])[:10] if published else []
    return render_template("board/public.html", village=village, lines=lines, period=period, hamlet=hamlet,
                           periods=_period_choices(), published=published, red_list=red_list,
                           red_title=published[0].title if published else None,
                           notices=len(awards.in_notice(village)))


@bp.get("/v/<code>/rankings/<int:snapshot_id>")
def snapshot_page(code, snapshot_id):
    """A published ranking; ``?print=1`` lays it out for an A4 notice board."""
    village = village_by_code(code)
    snapshot = access.get_or_404(RankingSnapshot, snapshot_id, _("找不到这份排行榜"), village_id=village.id)
    template = "board/print_ranking.html" if request.args.get("print") else "board/snapshot.html"
    return render_template(template, village=village, snapshot=snapshot,
                           entries=rankings.snapshot_entries(snapshot),
                           period_label=periods.label(snapshot.period))


@bp.get("/v/<code>/notices/print")
def notices_print(code):
    """The awards in public notice, laid out for an A4 notice board."""
    from .awards import _award_rows
    village = village_by_code(code)
    return render_template("board/print_notices.html", village=village,
                           rows=_award_rows(awards.in_notice(village), masked=True))


# --- the resident ----------------------------------------------------------------------------

def chart_bars(values: list[tuple[str, int]], width: int = 320, height: int = 140) -> dict:
    """Geometry of a small bar chart (server-side SVG, no JavaScript)."""
    top = max([v for _k, v in values] + [1])
    bottom = min([v for _k, v in values] + [0])
    span = top - bottom or 1
    slot = width / max(len(values), 1)
    zero = 16 + (height - 32) * top / span
    bars = []
    for index, (key, value) in enumerate(values):
        bar_height = (height - 32) * abs(value) / span
        y = zero - bar_height if value >= 0 else zero
        bars.append({"x": round(index * slot + slot * 0.15, 1), "y": round(y, 1), "w": round(slot * 0.7, 1),
                     "h": round(max(bar_height, 0.5), 1), "value": value, "label": key[5:].lstrip("0") or key,
                     "negative": value < 0, "tx": round(index * slot + slot / 2, 1)})
    return {"width": width, "height": height, "zero": round(zero, 1), "bars": bars}


def _resident_household() -> Household:
    household = access.own_household(current_user)
    if household is None:
        abort(403)
    return household


def resident_home_context(household: Household) -> dict:
    """What a resident sees first: balance, this month's score and rank, stars, a chart."""
    village = db.session.get(Area, household.village_id)
    month = periods.current_month()
    rank, month_score, ranked = rankings.rank_of(household, month)
    hamlet_rank, _score, hamlet_ranked = rankings.rank_of(household, month, in_hamlet=True)
    return {"household": household_summary(household), "village": village, "month_label": periods.label(month),
            "month_score": month_score, "rank": rank, "ranked": ranked, "hamlet_rank": hamlet_rank,
            "hamlet_ranked": hamlet_ranked, "chart": chart_bars(rankings.monthly_scores(household, 12)),
            "history": transfer_history(household, limit=5)[0]}


@bp.get("/me/history")
@login_required
def history():
    """Every ledger line of the household, newest first, with the rule and reason."""
    household = _resident_household()
    lines, cursor = transfer_history(household, before=request.args.get("before", type=bounded_int), limit=20)
    return render_template("resident/history.html", lines=lines, cursor=cursor,
                           household=household_summary(household))


@bp.get("/me/household")
@login_required
def members():
    household = _resident_household()
    return render_template("resident/members.html", household=household_summary(household))


# --- committee and supervisor ----------------------------------------------------------------

def _staff_village(code: str | None) -> Area:
    """A village the user may see as committee or supervisor (the first one by default)."""
    visible = [v for v in access.villages_visible(current_user) if access.sees_whole_village(current_user, v)]
    if not visible:
        abort(403)
    if code:
        village = next((v for v in visible if v.code == code.upper()), None)
        if village is None:
            abort(404)
        return village
    return visible[0]


@bp.get("/dashboard")
@login_required
def dashboard():
    village = _staff_village(request.args.get("village"))
    try:
        figures = rankings.village_dashboard(village, request.args.get("month"))
    except DomainError as error:
        flash(error.message, "error")
        figures = rankings.village_dashboard(village)
    series = {key: chart_bars(list(zip(figures["months"], values)), width=300, height=110)
              for key, values in figures["by_category"].items() if any(values)}
    return render_template("board/dashboard.html", village=village, f=figures, series=series,
                           categories=CATEGORIES, periods=_period_choices(), form_key=new_form_key(),
                           is_committee=access.is_committee(current_user, village),
                           others=[v for v in access.villages_visible(current_user) if v.id != village.id])


@bp.post("/committee/rankings")
@login_required
def publish():
    village = _staff_village(request.form.get("village"))
    period = request.form.get("period", "")
    hamlet = request.form.get("hamlet", type=bounded_int)
    try:
        def action():
            snapshot = rankings.publish(current_user, village, period, hamlet_id=hamlet,
                                        title=request.form.get("title"))
            return {"redirect": url_for("board.snapshot_page", code=village.code, snapshot_id=snapshot.id),
                    "message": _("已发布：%(title)s", title=snapshot.title)}
        return submit_once(action)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("board.dashboard", village=village.code))


@bp.get("/overview")
@login_required
def overview():
    """A supervisor's villages side by side."""
    try:
        rows = rankings.town_overview(current_user, request.args.get("month"))
    except DomainError as error:
        flash(error.message, "error")
        rows = rankings.town_overview(current_user)
    if not rows:
        abort(403)
    return render_template("board/overview.html", rows=rows,
                           month=request.args.get("month") or periods.current_month())


EXPORT_KINDS = {"rankings", "awards", "transfers"}


@bp.get("/exports/<kind>.<fmt>")
@login_required
def export(kind, fmt):
    """Rankings, awards or transfers of a village as XLSX or CSV (committee, supervisor)."""
    if kind not in EXPORT_KINDS or fmt not in ("xlsx", "csv"):
        abort(404)
    village = _staff_village(request.args.get("village"))
    period = request.args.get("period") or periods.current_month()
    try:
        period = periods.check(period)
        if kind == "rankings":
            rows = exports.ranking_rows(village, period, request.args.get("hamlet", type=bounded_int))
        else:
            start, end = periods.bounds(period)
            rows = (exports.award_rows if kind == "awards" else exports.transfer_rows)(village, start, end)
        data = exports.as_xlsx(rows, f"{kind}-{period}") if fmt == "xlsx" else exports.as_csv(rows)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("board.dashboard", village=village.code))
    from ..audit.service import record
    with write_transaction():
        record("export." + kind, actor=current_user, village_id=village.id, detail={"period": period, "format": fmt})
    mimetype = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
                else "text/csv; charset=utf-8")
    import io
    return send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True,
                     download_name=f"{village.code}-{kind}-{period}.{fmt}")
