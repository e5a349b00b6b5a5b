"""Sample media written on the spot: a deterministic image, MPEG-4 videos and a PDF with a text
layer, for the demo, the notebooks, the benchmarks, the toy training data and the tests.

``write_sample_pdf`` needs fpdf2 (``pip install "twn-rag[samples]"``, part of ``[all]``).
"""

from __future__ import annotations

from pathlib import Path

import torch


def make_sample_image(size: tuple[int, int] = (96, 64), seed: int = 0):
    """A deterministic RGB test image: coloured shapes on white."""
    from PIL import Image, ImageDraw

    rng = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = (int(torch.randint(0, s // 2, (1,), generator=rng)) for s in size)
        x1, y1 = x0 + size[0] // 3, y0 + size[1] // 3
        colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=rng))
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    return image


def write_video(path: str | Path, frames, fps: int) -> Path:
    """Encode RGB ``frames`` (an iterable of ``[height, width, 3]`` uint8 arrays, all one size)
    as an MPEG-4 video at ``fps``; returns ``path``."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.pix_fmt = "yuv420p"
        for i, pixels in enumerate(frames):
            if i == 0:
                stream.height, stream.width = pixels.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_sample_video(path: str | Path, seconds: float = 2.0, fps: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    """Encode a short MPEG-4 video of a square moving left to right; returns ``path``."""
    import numpy as np

    width, height = size
    total = int(seconds * fps)

    def frames():
        for i in range(total):
            pixels = np.full((height, width, 3), 255, dtype=np.uint8)
            x = int((width - 16) * i / max(total - 1, 1))
            pixels[height // 2 - 8 : height // 2 + 8, x : x + 16] = (200, 30, 30)
            yield pixels

    return write_video(path, frames(), fps)


SAMPLE_PAGE_TEXTS = (
    "Installation: unpack the archive and run the installer. The invoice total is 42 euros.",
    "Configuration: set the index directory and the reasoning budget before the first run.",
    "A red square and a blue circle on a white page; the video shows a ball moving right.",
)
_SAMPLE_COLOURS = ((200, 30, 30), (30, 60, 200), (30, 160, 60), (220, 160, 20))


def write_sample_pdf(
    path: str | Path,
    pages: int | list[str] | tuple[str, ...] = SAMPLE_PAGE_TEXTS,
    *,
    page_size: tuple[float, float] = (300.0, 200.0),
    password: str | None = None,
    shapes: bool = True,
) -> Path:
    """Write a real PDF with a text layer and a coloured shape on every page; returns ``path``.

    ``pages`` is a list of page texts, or a page count (texts cycle through
    ``SAMPLE_PAGE_TEXTS`` with the page number). ``page_size`` is in points. With ``password``
    the file is encrypted (readers need that password). ``shapes=False`` leaves the shape out
    (text only, so a page's rendering depends on its text alone). The bytes are deterministic.
    """
    import datetime

    try:
        from fpdf import FPDF
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('write_sample_pdf needs fpdf2: pip install "twn-rag[samples]"') from exc

    texts = (
        [f"Page {i + 1}. {SAMPLE_PAGE_TEXTS[i % len(SAMPLE_PAGE_TEXTS)]}" for i in range(pages)]
        if isinstance(pages, int)
        else list(pages)
    )
    width, height = page_size
    pdf = FPDF(unit="pt", format=(width, height))
    pdf.set_creation_date(datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
    pdf.set_auto_page_break(False)
    pdf.set_margins(12, 12, 12)
    for number, text in enumerate(texts):
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(width - 24, 13, text)
        if not shapes:
            continue
        pdf.set_fill_color(*_SAMPLE_COLOURS[number % len(_SAMPLE_COLOURS)])
        side = min(width, height) / 4
        pdf.rect(width - side - 12, height - side - 12, side, side, style="F")
    if password is not None:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path
