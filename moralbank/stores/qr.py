"""QR images of payment codes and cards (PNG for phones and print, SVG for crisp print).

The symbol comes from the ``qrcode`` package (pure Python, the ecosystem's standard); only its
module matrix is used. The PNG is written here directly: at 8 pixels a module and one bit a pixel,
a module is exactly one byte of a PNG row (0x00 dark, 0xFF light), so a row of modules *is* the
packed image row; each row is repeated 8 times and deflated. No image library is involved.

Drawing a symbol costs a few milliseconds (qrcode's Reed–Solomon step and its choice among the
eight masks), and a phone fetches the same code's picture more than once (page loads, refreshes,
the API's PNG and SVG), so finished images are kept in a small LRU keyed by the encoded text itself
(the URL carrying the code's token): one code's picture can never be served for another. Routes
refuse used and expired codes *before* asking for the picture, so the cache never decides who may
see one; it is bounded by count because codes are short-lived and each entry is a few kilobytes.
"""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import qrcode
from qrcode.constants import ERROR_CORRECT_M

#: pixels a module: 8, so that one module is one byte of a 1-bit PNG row
SCALE = 8
#: light modules around the symbol (the standard asks for 4; 3 reads everywhere and saves room)
BORDER = 3
#: images kept per process and format (a PNG is ~1 KB, an SVG ~15 KB)
CACHE_SIZE = 256


def _matrix(data: str) -> tuple[bytes, int]:
    """The symbol's modules, one byte each (0 dark, 255 light), row by row; and its side."""
    symbol = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0)
    symbol.add_data(data)
    symbol.make(fit=True)
    rows = symbol.modules
    return bytes(0 if dark else 255 for row in rows for dark in row), len(rows)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def draw_png(data: str) -> bytes:
    """A PNG of ``data``, drawn afresh (no cache): black on white, error correction M, a 3-module
    quiet zone, 8 pixels a module, one bit a pixel."""
    modules, side = _matrix(data)
    margin = b"\xff" * BORDER
    blank = b"\x00" + b"\xff" * (side + 2 * BORDER)  # filter byte 0, then a light row
    rows = [blank] * (BORDER * SCALE)
    for start in range(0, side * side, side):
        rows += [b"\x00" + margin + modules[start:start + side] + margin] * SCALE
    rows += [blank] * (BORDER * SCALE)
    pixels = (side + 2 * BORDER) * SCALE
    header = struct.pack(">IIBBBBB", pixels, pixels, 1, 0, 0, 0, 0)  # 1 bit grey, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
            + _chunk(b"IEND", b""))


def draw_svg(data: str) -> bytes:
    """An SVG of ``data``, drawn afresh (no cache): one path of unit squares, no external references."""
    modules, side = _matrix(data)
    size = side + 2 * BORDER
    path = "".join(f"M{x + BORDER} {y + BORDER}h1v1h-1z" for y in range(side) for x in range(side)
                   if modules[y * side + x] == 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size * SCALE}" '
            f'height="{size * SCALE}" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="#fff"/>'
            f'<path d="{path}" fill="#000"/></svg>').encode()


# The key is the whole encoded text, so an entry is only ever returned for the same URL (token).
_png = lru_cache(maxsize=CACHE_SIZE)(draw_png)
_svg = lru_cache(maxsize=CACHE_SIZE)(draw_svg)


def qr_png(data: str) -> bytes:
    """A PNG of ``data`` (see :func:`draw_png`); a repeated call for the same text is served from
    the process's LRU. Callers check that the code may still be shown before calling."""
    return _png(data)


def qr_svg(data: str) -> bytes:
    """An SVG of ``data`` (see :func:`draw_svg`), cached like :func:`qr_png`."""
    return _svg(data)


def clear_cache() -> None:
    """Forget every cached image (tests, and the bench's first-draw figure)."""
    _png.cache_clear()
    _svg.cache_clear()
