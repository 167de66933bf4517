"""Image files of every awkward kind the decoder must handle (16-bit, transparency, EXIF, palette, CMYK, ...)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 40, 24  # a landscape size: an EXIF rotation shows as a swapped shape


def sixteen_bit(path: Path, value: int = 8000) -> Path:
    """A 16-bit greyscale PNG (mode I;16) around `value` of 65,535, with a little texture."""
    a = np.full((H, W), value, np.uint16)
    a[::4] += 300  # texture: every 4th row 300 levels brighter (one 8-bit level)
    Image.fromarray(a).save(path)
    return path


def rgba_stroke(path: Path) -> Path:
    """A black stroke (opaque) on a fully transparent black background (RGBA)."""
    a = np.zeros((H, W, 4), np.uint8)  # transparent black
    a[H // 2 - 2:H // 2 + 2, 4:-4] = (0, 0, 0, 255)  # the stroke
    Image.fromarray(a, "RGBA").save(path)
    return path


def exif_rotated(path: Path) -> Path:
    """A JPEG stored sideways with EXIF Orientation=6 (display: rotate 90 degrees clockwise); left half red."""
    a = np.full((H, W, 3), 255, np.uint8)
    a[:, : W // 2] = (220, 20, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, quality=95, exif=exif.tobytes())
    return path


def palette_transparent(path: Path) -> Path:
    """A palette PNG whose index 0 is transparent (and black in the palette), index 1 is blue."""
    img = Image.new("P", (W, H), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (10, 6, 30, 18))
    img.save(path, transparency=0)
    return path


def cmyk_jpeg(path: Path) -> Path:
    """A CMYK JPEG: cyan on the left, white on the right."""
    a = np.zeros((H, W, 4), np.uint8)
    a[:, : W // 2, 0] = 255  # full cyan
    Image.fromarray(a, "CMYK").save(path, quality=95)
    return path


def one_bit(path: Path) -> Path:
    """A 1-bit PNG: a white square on black."""
    img = Image.new("1", (W, H), 0)
    img.paste(1, (10, 6, 30, 18))
    img.save(path)
    return path


def grey_alpha(path: Path) -> Path:
    """An LA PNG: dark grey (40) opaque on the left, fully transparent on the right."""
    a = np.zeros((H, W, 2), np.uint8)
    a[..., 0] = 40
    a[:, : W // 2, 1] = 255
    Image.fromarray(a, "LA").save(path)
    return path


def float_tiff(path: Path) -> Path:
    """A 32-bit float TIFF (mode F) with values in 0..1: a horizontal ramp."""
    Image.fromarray(np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1)), "F").save(path)
    return path


def int_tiff(path: Path) -> Path:
    """A 32-bit integer TIFF (mode I) with 16-bit values: a ramp 0..65535."""
    Image.fromarray(np.tile(np.linspace(0, 65535, W).astype(np.int32), (H, 1)), "I").save(path)
    return path


CASES: dict[str, Callable[[Path], Path]] = {
    "16bit.png": sixteen_bit, "rgba_stroke.png": rgba_stroke, "exif6.jpg": exif_rotated,
    "palette_trns.png": palette_transparent, "cmyk.jpg": cmyk_jpeg, "1bit.png": one_bit, "la.png": grey_alpha,
    "float.tif": float_tiff, "int.tif": int_tiff,
}


def write_cases(folder: Path) -> list[Path]:
    """Every case file in `folder` (created), in CASES order."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make(folder / name) for name, make in CASES.items()]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG of `width` x `height` greyscale pixels whose pixel data is one zero row: opening it costs nothing,
    decoding it would allocate width * height bytes and then fail as truncated."""
    row = zlib.compress(b"\x00" * (width + 1))  # filter byte + one row of zeros
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", row) + _chunk(b"IEND", b""))
    return path
