"""The staff's figures: a village's dashboard and publishing its ranking (committee), the town
overview (supervisor), and exports (routes of the ``board`` blueprint)."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import periods
from ..awards.models import CATEGORIES
from ..database import write_transaction
from ..errors import DomainError
from ..people import access
from ..people.models import Area
from ..rankings import exports
from ..rankings import service as rankings
from ..replica import reads_replica
from .board import _period_choices, bp
from .forms import bounded_int, new_form_key, submit_once
from .resident import chart_bars


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
@reads_replica
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
@reads_replica
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
@reads_replica
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
