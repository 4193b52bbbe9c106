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
from .board import bp, period_groups
from .forms import bounded_int, confirmed, new_form_key, preview, submit_once
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


def _period_arg() -> str | None:
    """The period a page was asked for: ``?period=`` (what the picker sends), or ``?month=`` (the
    older links, still answered)."""
    return request.args.get("period") or request.args.get("month")


@bp.get("/dashboard")
@login_required
@reads_replica
def dashboard():
    """A village's figures for a period, its exports, and (committee) publishing its ranking."""
    village = _staff_village(request.args.get("village"))
    try:
        figures = rankings.village_dashboard(village, _period_arg())
    except DomainError as error:
        flash(error.message, "error")
        figures = rankings.village_dashboard(village)
    series = {key: chart_bars(list(zip(figures["months"], values)))
              for key, values in figures["by_category"].items() if any(values)}
    period = figures["period"]
    return render_template("board/dashboard.html", village=village, f=figures, series=series, period=period,
                           period_label=periods.label(period),
                           categories=CATEGORIES, periods=period_groups(period, periods.KINDS[:3]),
                           publish_periods=periods.picker(finished_first=True),
                           publish_default=request.args.get("publish") or periods.last_month(),
                           form_key=new_form_key(),
                           is_committee=access.is_committee(current_user, village),
                           others=[v for v in access.villages_visible(current_user) if v.id != village.id])


@bp.post("/committee/rankings")
@login_required
def publish():
    """Publish (freeze) a period's ranking, after a second look (``forms.preview``)."""
    village = _staff_village(request.form.get("village"))
    period = request.form.get("period", "")
    hamlet = request.form.get("hamlet", type=bounded_int)
    try:
        if not confirmed():
            return _publish_preview(village, period, hamlet)

        def action():
            snapshot = rankings.publish(current_user, village, period, hamlet_id=hamlet,
                                        title=request.form.get("title"))
            return {"redirect": url_for("board.snapshot_page", code=village.code, snapshot_id=snapshot.id),
                    "message": _("已发布：%(title)s", title=snapshot.title)}
        return submit_once(action)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("board.dashboard", village=village.code))


def _publish_preview(village: Area, period: str, hamlet: int | None):
    """What publishing would freeze: the period, the scope, how many households, the first few."""
    if not access.is_committee(current_user, village):
        abort(403)
    period = periods.check(period or periods.ALL)
    count = rankings.ranked_count(village, period, hamlet_id=hamlet)
    top = rankings.ranking(village, period, hamlet_id=hamlet, limit=5)
    scope = next((h.name for h in village.children if h.id == hamlet), _("全村"))
    title = request.form.get("title", "").strip()[:64] or _("%(period)s 积分榜", period=periods.label(period))
    lines = [_("发布 %(period)s 红榜（%(scope)s）：「%(title)s」，共 %(n)s 户上榜",
               period=periods.label(period), scope=scope, title=title, n=count)]
    lines += [_("第 %(rank)s 名 %(who)s（%(hamlet)s）%(score)s 分", rank=line.rank, who=line.label,
                hamlet=line.hamlet, score=line.score) for line in top]
    if not periods.is_over(period) and period != periods.ALL:
        lines.append(_("注意：%(period)s 还没有结束，以后的积分不会计入这份榜单", period=periods.label(period)))
    earlier = rankings.published(village, period, hamlet_id=hamlet)
    if earlier is not None:
        lines.append(_("这个期间已经发布过一次（%(title)s），会再发布一份新的", title=earlier.title))
    back = url_for("board.dashboard", village=village.code, publish=period) + "#publish"
    return preview(_("发布排行榜"), lines, back=back, button=_("确认发布"),
                   refusal=None if count else _("这个期间还没有任何积分，不能发布"))


@bp.get("/overview")
@login_required
@reads_replica
def overview():
    """A supervisor's villages side by side."""
    period = _period_arg() or periods.current_month()
    try:
        rows = rankings.town_overview(current_user, period)
    except DomainError as error:
        flash(error.message, "error")
        period = periods.current_month()
        rows = rankings.town_overview(current_user, period)
    if not rows:
        abort(403)
    return render_template("board/overview.html", rows=rows, month=period, period=period,
                           period_label=periods.label(period), periods=period_groups(period))


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
