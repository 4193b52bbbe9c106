"""QR images of payment codes and cards (PNG for phones and print, SVG for crisp print)."""
from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M


def _qr(data: str) -> qrcode.QRCode:
    # A fixed mask pattern skips scoring all eight masks, the costliest step (17 ms → ~2 ms);
    # any mask gives a valid code that every reader decodes.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=3, mask_pattern=2)
    code.add_data(data)
    code.make(fit=True)
    return code


def qr_png(data: str, scale: int = 8) -> bytes:
    """A PNG of ``data`` (black on white, 3-module quiet zone, ``scale`` pixels a module).

    Drawn from the module matrix in one go (one pixel a module, then scaled
    without smoothing) instead of qrcode's rectangle-per-module drawing.
    """
    matrix = _qr(data).get_matrix()
    size = len(matrix)
    pixels = bytes(0 if dark else 255 for row in matrix for dark in row)
    image = Image.frombytes("L", (size, size), pixels).resize((size * scale, size * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def qr_svg(data: str) -> bytes:
    """An SVG of ``data`` (paths, no external references)."""
    image = _qr(data).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()
