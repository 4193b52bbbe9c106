"""QR images of payment codes and cards (PNG for phones and print, SVG for crisp print).

The symbol comes from zxing-cpp's encoder (C++; about ten times faster than the pure-Python
``qrcode`` package, whose Reed–Solomon step alone took 2–4 ms a code). The PNG is written here
directly: at 8 pixels a module and one bit a pixel, a module is exactly one byte of a PNG row, so
the module matrix (0 = dark, 255 = light, one byte a module) *is* the packed image row; each row
is repeated 8 times and deflated. No image library is involved.
"""
from __future__ import annotations

import struct
import zlib

import zxingcpp

#: pixels a module: 8, so that one module is one byte of a 1-bit PNG row
SCALE = 8
#: light modules around the symbol (the standard asks for 4; 3 reads everywhere and saves room)
BORDER = 3


def _matrix(data: str):
    """The symbol's modules, one byte each (0 dark, 255 light), row by row; and its side."""
    symbol = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    return bytes(memoryview(image)), image.shape[0]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def qr_png(data: str) -> bytes:
    """A PNG of ``data``: black on white, error correction M, a 3-module quiet zone, 8 pixels a module."""
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


def qr_svg(data: str) -> bytes:
    """An SVG of ``data`` (one path of unit squares, no external references)."""
    modules, side = _matrix(data)
    size = side + 2 * BORDER
    path = "".join(f"M{x + BORDER} {y + BORDER}h1v1h-1z" for y in range(side) for x in range(side)
                   if modules[y * side + x] == 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size * SCALE}" '
            f'height="{size * SCALE}" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="#fff"/>'
            f'<path d="{path}" fill="#000"/></svg>').encode()
