"""A meeting's minutes (会议记录): a photo of the signed page, re-encoded like evidence photos
(``photos.store_photo``), or a PDF, kept as it came after a check that it is one."""
from __future__ import annotations

import secrets

from flask_babel import gettext as _

from ..errors import Invalid
from ..extensions import db
from .photos import store_photo, upload_root

PDF_MAX_BYTES = 10 * 1024 * 1024


def store_minutes(data: bytes, village_id: int) -> str:
    """Validate and store minutes; return the path relative to the upload root."""
    if data[:5] == b"%PDF-":
        if len(data) > PDF_MAX_BYTES:
            raise Invalid(_("会议记录太大（最大 %(mb)s MB）", mb=PDF_MAX_BYTES // (1024 * 1024)),
                          code="minutes_too_large", fields={"minutes": [_("太大")]})
        if b"%%EOF" not in data[-2048:]:
            raise Invalid(_("PDF 文件不完整"), code="bad_minutes", fields={"minutes": [_("请重新上传")]})
        folder = upload_root() / str(village_id)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{secrets.token_hex(16)}.pdf"
        (folder / name).write_bytes(data)
        db.session().info.setdefault("new_files", []).append(folder / name)
        return f"{village_id}/{name}"
    try:
        return store_photo(data, village_id)
    except Invalid as error:
        raise Invalid(error.message if error.code != "bad_photo" else _("会议记录应为 JPG、PNG 照片或 PDF"),
                      code="bad_minutes" if error.code == "bad_photo" else error.code,
                      fields={"minutes": error.fields.get("photo", [])}) from None


def minutes_file(relative: str):
    """The stored minutes' path and mimetype."""
    path = upload_root() / relative
    return path, "application/pdf" if path.suffix == ".pdf" else "image/jpeg"
