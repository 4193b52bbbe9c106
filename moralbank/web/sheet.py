"""The grid manager's inspection sheet (评分表) on a phone: one card per household with a large toggle
per chosen item and a camera button, and the photos kept on the server the moment they are taken
(routes of the ``awards`` blueprint).

A photo reaches the server in one of two ways, and either way it is stored at once, in its own
transaction, and the form holds its id from then on (``photo_id-<household>``):

- with JavaScript, ``static/js/sheet.js`` posts it to ``/grid/photos`` as soon as it is taken;
- without, it comes with the sheet itself, and is kept before the sheet's rows are checked.

So a sheet sent back because another row is wrong shows every photo already taken, and filing it
again attaches them; nothing has to be photographed twice.
"""
from __future__ import annotations

from flask import abort, flash, jsonify, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..api.errors import envelope
from ..awards import service as awards
from ..awards.photos import held_photo, keep_photo, photo_file
from ..database import write_transaction
from ..errors import DomainError
from ..people import access
from .. import periods
from .awards import bp
from .forms import bounded_int, form_ints, grid_village, new_form_key, submit_once
from .proposals import households_of, parse_day

#: how many items the sheet opens with when none are chosen (the village's first hygiene items)
DEFAULT_ITEMS = 4


def _sheet_scope():
    """The village, the hamlets the user may fill sheets for, and the chosen hamlet (403 otherwise)."""
    village = grid_village()
    hamlet_ids = access.hamlet_scope(current_user, village)
    hamlets = [h for h in village.children if hamlet_ids is None or h.id in hamlet_ids]
    if not hamlets:
        abort(403)
    hamlet_id = request.values.get("hamlet", type=bounded_int) or hamlets[0].id
    hamlet = next((h for h in hamlets if h.id == hamlet_id), None)
    if hamlet is None:
        abort(403)
    return village, hamlets, hamlet


def _photo_view(photo_id: int) -> dict:
    return {"id": photo_id, "thumb": url_for("awards.sheet_photo", photo_id=photo_id)}


def _keep_photos(village, households) -> tuple[dict[int, dict], dict[int, list[str]], dict[int, str]]:
    """Store each photo the sheet brought and resolve the ids it holds: the photos by household (for
    the page), the photo problems by household, and the stored paths by household (for the awards)."""
    shown: dict[int, dict] = {}
    problems: dict[int, list[str]] = {}
    paths: dict[int, str] = {}
    for household in households:
        hid = household["id"]
        upload = request.files.get(f"photo-{hid}")
        try:
            if upload and upload.filename:
                with write_transaction():  # kept now, whatever happens to the rest of the sheet
                    photo = keep_photo(current_user, village, upload.read())
            else:
                held = request.form.get(f"photo_id-{hid}", type=bounded_int)
                if held is None:
                    continue
                photo = held_photo(current_user, village.id, held)
        except DomainError as error:
            problems.setdefault(hid, []).append(error.message)
            continue
        shown[hid] = _photo_view(photo.id)
        paths[hid] = photo.path
    return shown, problems, paths


@bp.route("/grid/sheet", methods=["GET", "POST"])
@login_required
def sheet():
    """The monthly inspection sheet: the households of a hamlet × the chosen items, filed as one
    batch (every row or none); a refused sheet comes back with each problem next to its household."""
    village, hamlets, hamlet = _sheet_scope()
    all_rules = awards.active_rules(village)
    chosen_ids = form_ints(request.values.getlist("rules"))
    if not chosen_ids:
        chosen_ids = [rule.id for rule in all_rules if rule.category == "hygiene"][:DEFAULT_ITEMS]
    chosen = [rule for rule in all_rules if rule.id in chosen_ids]
    households = households_of(village, {hamlet.id})
    status = 200
    photos: dict[int, dict] = {}
    photo_problems: dict[int, list[str]] = {}
    cell_problems: dict[str, list[str]] = {}
    field_problems: dict[str, list[str]] = {}
    summary: list[tuple[int, str, str]] = []  # (household id, row label, message) for the list at the top
    if request.method == "POST":
        photos, photo_problems, paths = _keep_photos(village, households)
        occurred_on = None
        try:
            occurred_on = parse_day(request.form.get("occurred_on"))
        except DomainError as error:
            field_problems = error.fields
        by_name = {household["id"]: household for household in households}
        rows, cells = [], {}
        for household in households:
            for rule in chosen:
                name = f"cell-{household['id']}-{rule.id}"
                if request.form.get(name):
                    cells[name] = (household, rule)
                    rows.append((name, awards.Proposal(household_id=household["id"], rule_id=rule.id,
                                                       occurred_on=occurred_on,
                                                       photo_path=paths.get(household["id"]))))
        for hid, messages in photo_problems.items():
            summary += [(hid, f"{by_name[hid]['number']} {by_name[hid]['head']} · {_('照片')}", m) for m in messages]
        if not photo_problems and not field_problems:
            try:
                def action():
                    created = awards.propose_batch(current_user, rows)
                    return {"redirect": url_for("awards.sheet", hamlet=hamlet.id, rules=chosen_ids),
                            "message": _("评分表已提交：%(n)s 条记录等待村委会审核", n=len(created))}
                return submit_once(action)
            except DomainError as error:
                if error.code == "empty_sheet":
                    flash(error.message, "error")
                for name, errors in getattr(error, "rows", {}).items():
                    household, rule = cells[name]
                    for row_error in errors:
                        if "photo" in row_error.fields:  # the item needs a photo: said at the camera button
                            photo_problems.setdefault(household["id"], []).append(row_error.message)
                        else:
                            cell_problems.setdefault(name, []).append(row_error.message)
                        summary.append((household["id"], f"{household['number']} {household['head']} · {rule.title}",
                                        row_error.message))
        status = 422
    bad = {hid for hid, _label, _message in summary} | set(photo_problems)
    return render_template("awards/sheet.html", village=village, hamlets=hamlets, hamlet=hamlet,
                           all_rules=all_rules, chosen=chosen, households=households, photos=photos,
                           photo_problems=photo_problems, cell_problems=cell_problems, problems=field_problems,
                           summary=summary, bad=bad, form_key=new_form_key(), form=request.form,
                           today=periods.today()), status


@bp.post("/grid/photos")
@login_required
def keep_sheet_photo():
    """A photo taken on the sheet, stored at once (the sheet's script posts it as it is taken):
    201 ``{id, thumb}``, or the JSON error envelope naming the photo's problem."""
    village = grid_village()
    upload = request.files.get("photo")
    try:
        if not upload or not upload.filename:
            raise DomainError(_("没有收到照片，请重新拍照"), code="bad_photo", status=422,
                              fields={"photo": [_("请重新拍照")]})
        with write_transaction():
            photo = keep_photo(current_user, village, upload.read())
    except DomainError as error:
        return envelope(error.code, error.message, error.status, error.fields)
    return jsonify(_photo_view(photo.id)), 201


@bp.get("/grid/photos/<int:photo_id>")
@login_required
def sheet_photo(photo_id):
    """The thumbnail of a photo kept for a sheet, for the one who took it."""
    village = grid_village()
    try:
        photo = held_photo(current_user, village.id, photo_id)
    except DomainError:
        abort(404)
    path = photo_file(photo.path, thumb=True)
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype="image/jpeg", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
