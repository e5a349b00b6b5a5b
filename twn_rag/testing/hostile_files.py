"""Hostile input files, generated on the spot for tests and the hostile-corpus benchmark:
decompression bombs, extreme aspect ratios, symbolic link loops, FIFOs, links to devices, and
file names that are not valid UTF-8 or hold a newline. Each writer returns the path it made."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from twn_rag.samples import make_sample_image, write_sample_pdf, write_video

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_BASELINE_FRAME = b"\xff\xc0"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: str | Path, side: int = 30_000) -> Path:
    """A valid 1-bit greyscale PNG of ``side`` x ``side`` black pixels: about 100 KB on disk
    for 30000 x 30000, 2.7 GB once decoded to RGB. Written row by row, never held decoded."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter type 0, then the packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path = Path(path)
    path.write_bytes(
        _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    )
    return path


def write_jpeg_bomb(path: str | Path, side: int = 65_000) -> Path:
    """A small JPEG whose frame header declares ``side`` x ``side`` pixels (its scan data is
    that of a 16 x 16 image): what a reader allocates from the header alone."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(_JPEG_BASELINE_FRAME)
    data[frame + 5 : frame + 9] = struct.pack(">HH", side, side)  # after marker, length and precision
    path = Path(path)
    path.write_bytes(bytes(data))
    return path


def write_wide_image(path: str | Path, size: tuple[int, int] = (10_000, 20)) -> Path:
    """A sample picture stretched to ``size`` (500:1 by default)."""
    path = Path(path)
    make_sample_image((max(size[0] // 50, 8), max(size[1], 8)), seed=3).resize(size).save(path)
    return path


def write_wide_pdf(path: str | Path, page_size: tuple[float, float] = (10_000.0, 20.0)) -> Path:
    """A one-page PDF whose page is a 500:1 strip (in points)."""
    return write_sample_pdf(path, ["A banner page, one long strip of text."], page_size=page_size)


def write_wide_video(path: str | Path, size: tuple[int, int] = (1024, 4), frames: int = 8, fps: int = 4) -> Path:
    """An MPEG-4 video of ``size`` frames (256:1 by default), grey levels rising."""
    width, height = size
    pixels = (np.full((height, width, 3), 30 * i, dtype=np.uint8) for i in range(frames))
    return write_video(path, pixels, fps)


def make_symlink_loop(directory: str | Path, name: str = "loop.pdf") -> Path:
    """Two symbolic links pointing at each other; returns the one named ``name``."""
    directory = Path(directory)
    first, second = directory / name, directory / f"{name}.other"
    os.symlink(second.name, first)
    os.symlink(first.name, second)
    return first


def make_fifo(path: str | Path) -> Path:
    """A FIFO (named pipe): opening it for reading blocks until a writer comes."""
    os.mkfifo(path)
    return Path(path)


def link_to_device(path: str | Path, device: str = "/dev/zero") -> Path:
    """A symbolic link to ``device`` (endless bytes, for ``/dev/zero``)."""
    os.symlink(device, path)
    return Path(path)


def undecodable_name(directory: str | Path, raw_name: bytes = b"caf\xe9-\xff.pdf") -> Path:
    """The path of a file in ``directory`` whose name's bytes are not valid UTF-8 (Latin-1
    bytes and a stray 0xff); Python carries them as surrogate escapes."""
    return Path(directory) / os.fsdecode(raw_name)
