"""API resources of rankings (public, names masked), published snapshots and dashboards."""
from __future__ import annotations

from flask import g, jsonify, request
from flask_babel import get_locale
from flask_babel import gettext as _
from marshmallow import Schema, fields, validate

from .. import edge, periods
from ..database import write_transaction
from ..errors import NotFound
from ..extensions import db
from ..people import access
from ..people.models import Area
from ..people.service import village_by_code
from ..rankings import service as rankings
from ..rankings import versions
from ..rankings.models import RankingSnapshot
from . import bp
from . import schemas as s
from .openapi import doc
from .resources import load_json, token_required


class RankingArgsSchema(Schema):
    village = fields.String(required=True, validate=validate.Length(min=1, max=32))
    hamlet = fields.String(load_default=None, metadata={"description": "hamlet id or code"})
    period = fields.String(load_default="all", validate=s.WholeRegexp(s.PERIOD_PATTERN))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=rankings.MAX_LIMIT))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100000))


class RankLineSchema(Schema):
    rank = fields.Integer()
    household_id = fields.Integer()
    label = fields.String(metadata={"description": "the head's name, masked (张*华)"})
    hamlet = fields.String()
    score = fields.Integer()
    stars = fields.Integer()


class RankingSchema(Schema):
    village = fields.String()
    period = fields.String()
    hamlet = fields.String(allow_none=True)
    items = fields.List(fields.Nested(RankLineSchema))
    next = fields.String(allow_none=True)


class SnapshotSchema(Schema):
    id = fields.Integer()
    village = fields.String()
    hamlet_id = fields.Integer(allow_none=True)
    period = fields.String()
    title = fields.String()
    published_at = fields.DateTime()
    items = fields.List(fields.Nested(RankLineSchema))


class SnapshotBriefSchema(Schema):
    id = fields.Integer()
    period = fields.String()
    title = fields.String()
    hamlet_id = fields.Integer(allow_none=True)
    published_at = fields.DateTime()


class SnapshotListSchema(Schema):
    items = fields.List(fields.Nested(SnapshotBriefSchema))
    next = fields.String(allow_none=True)


class OverviewRowSchema(Schema):
    village = fields.String(metadata={"description": "village code"})
    name = fields.String()
    households = fields.Integer()
    active = fields.Integer(metadata={"description": "households with any award this month"})
    participation = fields.Float()
    points = fields.Integer(metadata={"description": "points awarded this month (net of deductions)"})
    average = fields.Float(metadata={"description": "points per household"})
    redeemed = fields.Integer(metadata={"description": "points spent at the village's shops this month"})


class OverviewSchema(Schema):
    month = fields.String()
    items = fields.List(fields.Nested(OverviewRowSchema))


class SnapshotRequestSchema(Schema):
    period = fields.String(required=True, validate=s.WholeRegexp(s.PERIOD_PATTERN))
    hamlet = fields.String(load_default=None)
    title = fields.String(load_default=None, validate=validate.Length(max=64))


class DashboardSchema(Schema):
    village = fields.String()
    month = fields.String()
    months = fields.List(fields.String())
    by_category = fields.Dict(keys=fields.String(), values=fields.List(fields.Integer()))
    households = fields.Integer()
    active = fields.Integer()
    participation = fields.Float(metadata={"description": "share of households with any award this month"})
    top_movers = fields.List(fields.Dict())
    bottom_movers = fields.List(fields.Dict())


#: the public ranking's schemas, built once (an instance per request deep-copies its fields)
_RANKING_ARGS, _RANKING = RankingArgsSchema(), RankingSchema()


def hamlet_id_of(village: Area, text: str | None) -> int | None:
    """A hamlet given by id or code (or name), within the village; None for the whole village."""
    if not text:
        return None
    for hamlet in village.children:
        if text in (str(hamlet.id), hamlet.code, hamlet.name):
            return hamlet.id
    raise NotFound(_("本村没有这个屯/组"), code="unknown_hamlet", fields={"hamlet": [_("不存在")]})


@bp.get("/rankings")
@doc("Ranking of a village or hamlet for a period (2026-11, 2026-Q4, 2026, all); public, names masked",
     response=RankingSchema, errors=(404, 422), public=True, query=RankingArgsSchema)
def get_ranking():
    args = _RANKING_ARGS.load(request.args)
    # A conditional GET: the village's board version is the ETag (see web.board.public_board).
    village, version, _notices = versions.board_state(args["village"])
    # the current month too: a URL without ?period= names a new month on the 1st, with no posting yet
    etag = versions.board_etag(village, version, get_locale(), periods.current_month())
    unchanged = edge.not_modified(etag, public=True)
    if unchanged is not None:
        return unchanged
    hamlet_id = hamlet_id_of(village, args["hamlet"])
    lines = rankings.ranking(village, args["period"], hamlet_id=hamlet_id, limit=args["limit"] + 1,
                             offset=args["offset"])
    more = len(lines) > args["limit"]
    return edge.cache_headers(jsonify(_RANKING.dump({
        "village": village.code, "period": args["period"], "hamlet": args["hamlet"],
        "items": [line.__dict__ for line in lines[:args["limit"]]],
        "next": str(args["offset"] + args["limit"]) if more else None})), etag, public=True)


def _snapshot_body(snapshot: RankingSnapshot, village: Area) -> dict:
    return SnapshotSchema().dump({
        "id": snapshot.id, "village": village.code, "hamlet_id": snapshot.hamlet_id, "period": snapshot.period,
        "title": snapshot.title, "published_at": snapshot.published_at,
        "items": [{"rank": e.rank, "household_id": e.household_id, "label": e.label, "hamlet": e.hamlet,
                   "score": e.score, "stars": e.stars} for e in rankings.snapshot_entries(snapshot)]})


@bp.get("/villages/<code>/ranking-snapshots")
@doc("Published rankings of a village, newest first (public)", response=SnapshotListSchema, public=True,
     errors=(404,))
def list_snapshots(code):
    village = village_by_code(code)
    return jsonify(SnapshotListSchema().dump({"items": rankings.snapshots(village), "next": None}))


@bp.get("/ranking-snapshots/<int:snapshot_id>")
@doc("One published ranking, as frozen when published (public)", response=SnapshotSchema, public=True,
     errors=(404,))
def get_snapshot(snapshot_id):
    snapshot = access.get_or_404(RankingSnapshot, snapshot_id, _("找不到这份排行榜"))
    return jsonify(_snapshot_body(snapshot, db.session.get(Area, snapshot.village_id)))


@bp.post("/villages/<code>/ranking-snapshots")
@token_required
@doc("Publish (freeze) the ranking of a period for the notice board (committee)", request=SnapshotRequestSchema,
     response=SnapshotSchema, status=201, errors=(403, 404))
def publish_snapshot(code):
    village = village_by_code(code)
    data = load_json(SnapshotRequestSchema())
    with write_transaction():
        snapshot = rankings.publish(g.api_user, village, data["period"],
                                    hamlet_id=hamlet_id_of(village, data["hamlet"]), title=data["title"])
        body = _snapshot_body(snapshot, village)
    return jsonify(body), 201


@bp.get("/villages/<code>/dashboard")
@token_required
@doc("Points by category per month, participation, top and bottom movers (committee, supervisor)",
     response=DashboardSchema, errors=(403, 404), query=s.MonthArgsSchema)
def dashboard(code):
    village = village_by_code(code)
    access.require(access.sees_whole_village(g.api_user, village), _("只有村委会和督导可以查看"))
    month = s.MonthArgsSchema().load(request.args)["month"]
    return jsonify(DashboardSchema().dump(rankings.village_dashboard(village, month)))


@bp.get("/overview")
@token_required
@doc("The villages you may see as staff, side by side for a month ?month=2026-11 (supervisor, committee)",
     response=OverviewSchema, errors=(403,), query=s.MonthArgsSchema)
def overview():
    month = s.MonthArgsSchema().load(request.args)["month"]
    rows = rankings.town_overview(g.api_user, month)
    if not rows:
        access.require(False, _("没有可查看的村"))
    return jsonify(OverviewSchema().dump({
        "month": month or periods.current_month(),
        "items": [dict(row, village=row["village"].code, name=row["village"].name) for row in rows]}))
