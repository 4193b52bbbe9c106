"""Evidence photos: accepted as JPEG or PNG, re-encoded and thumbnailed with Pillow.

Re-encoding drops every piece of metadata (EXIF with GPS position, camera,
owner) and any payload hidden after the image data; only pixels are kept. Files
live under ``UPLOAD_FOLDER`` (default ``instance/uploads``), one folder per
village, named by a random id, and are served only to those allowed to see the
award (see ``web.awards.photo``).
"""
from __future__ import annotations

import io
import secrets
from pathlib import Path

from flask import current_app
from flask_babel import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from ..database import require_write_transaction
from ..errors import Invalid
from ..extensions import db
from ..people import access
from .models import EvidencePhoto

MAX_SIDE = 1600
THUMB_SIDE = 320
MAX_PIXELS = 24_000_000  # a 24-megapixel phone photo; larger is refused before it is decoded
Image.MAX_IMAGE_PIXELS = 40_000_000  # and Pillow itself refuses decompression bombs


def upload_root() -> Path:
    configured = current_app.config.get("UPLOAD_FOLDER")
    return Path(configured) if configured else Path(current_app.instance_path) / "uploads"


def store_photo(data: bytes, village_id: int) -> str:
    """Validate, re-encode and store a photo; return its path relative to the upload root."""
    limit = current_app.config.get("PHOTO_MAX_BYTES", 8 * 1024 * 1024)
    if not data:
        raise Invalid(_("照片是空的"), code="bad_photo", fields={"photo": [_("请重新拍照上传")]})
    if len(data) > limit:
        raise Invalid(_("照片太大（最大 %(mb)s MB）", mb=limit // (1024 * 1024)), code="photo_too_large",
                      fields={"photo": [_("太大")]})
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            width, height = probe.size
            probe.verify()
        if width * height > MAX_PIXELS:
            # A few KB of PNG can decode to hundreds of MB: refuse before decoding.
            raise Invalid(_("照片像素太多（最多 2400 万像素）"), code="photo_too_large", fields={"photo": [_("太大")]})
        if kind not in ("JPEG", "PNG"):
            raise Invalid(_("只接受 JPG 或 PNG 照片"), code="bad_photo", fields={"photo": [_("格式不对")]})
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            image = image.convert("RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            name = secrets.token_hex(16)
            folder = upload_root() / str(village_id)
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{name}.jpg", "JPEG", quality=85, optimize=True)
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            image.save(folder / f"{name}_t.jpg", "JPEG", quality=80, optimize=True)
    except Invalid:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise Invalid(_("无法识别这张照片"), code="bad_photo", fields={"photo": [_("请上传 JPG 或 PNG")]})
    # Written before the transaction commits: if it rolls back, write_transaction removes them.
    db.session().info.setdefault("new_files", []).extend([folder / f"{name}.jpg", folder / f"{name}_t.jpg"])
    return f"{village_id}/{name}.jpg"


def photo_file(relative: str, thumb: bool = False) -> Path:
    path = upload_root() / relative
    return path.with_name(path.stem + "_t.jpg") if thumb else path


# --- photos kept before the sheet is filed ---------------------------------------------------

def keep_photo(actor, village, data: bytes):
    """Store a photo the moment it is taken on the inspection sheet (its own transaction, so a sheet
    refused later keeps it) and return its ``EvidencePhoto``; the page holds its id."""
    require_write_transaction()
    access.require(access.is_committee(actor, village) or bool(access.grid_hamlet_ids(actor, village)),
                   _("只有网格员和村委会可以上传评分照片"))
    photo = EvidencePhoto(village_id=village.id, uploaded_by_id=actor.id, path=store_photo(data, village.id))
    db.session.add(photo)
    db.session.flush()
    return photo


def held_photo(actor, village_id: int, photo_id: int):
    """A kept photo the sheet's form names: only the one who took it, in that village; else a
    readable refusal (the row asks for the photo again)."""
    photo = db.session.get(EvidencePhoto, photo_id)
    if photo is None or photo.uploaded_by_id != actor.id or photo.village_id != village_id:
        raise Invalid(_("这张照片找不到了，请重新拍照"), code="bad_photo", fields={"photo": [_("请重新拍照")]})
    return photo
