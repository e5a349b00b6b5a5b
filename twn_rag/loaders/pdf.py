"""PDF pages with pypdfium2: the text layer and a rendered page image, one item per page."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.media import IMAGE_FILL, MAX_ASPECT_RATIO, fit_image

POINTS_PER_INCH = 72


def render_scale(width_pt: float, height_pt: float, max_pixels: int, max_scale: float) -> float:
    """The render scale (pixels per point) that keeps a page within ``max_pixels``, counting
    the padding an extreme aspect ratio will get (``fit_image``)."""
    long_side, short_side = max(width_pt, height_pt), min(width_pt, height_pt)
    area = max(long_side * max(short_side, long_side / MAX_ASPECT_RATIO), 1.0)
    return min(max_scale, math.sqrt(max_pixels / area))


def render_page(page, max_pixels: int, max_scale: float) -> Image.Image:
    """Render one ``pypdfium2.PdfPage`` to an RGB image of at most ``max_pixels``; an extreme
    aspect ratio (a 14400 x 20 pt strip) is padded with white into what the model accepts."""
    width, height = page.get_size()
    bitmap = page.render(scale=render_scale(width, height, max_pixels, max_scale))
    try:
        return fit_image(bitmap.to_pil().convert("RGB"), max_pixels, IMAGE_FILL)
    finally:
        bitmap.close()


def page_text(page) -> str:
    """The page's text layer, with PDFium's CRLF line ends normalised."""
    textpage = page.get_textpage()
    try:
        return textpage.get_text_bounded().replace("\r\n", "\n").replace("\r", "\n").strip()
    finally:
        textpage.close()


def open_pdf(path: Path):
    """Open with PDFium; ``LoadError`` naming the file and why (empty, encrypted, damaged)."""
    import pypdfium2 as pdfium

    if path.stat().st_size == 0:
        raise LoadError(path, "empty file (0 bytes), not a PDF")
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        message = str(exc)
        if "password" in message.lower() and b"/Encrypt" in path.read_bytes():
            raise LoadError(path, "the PDF is encrypted (password-protected); decrypt it and index it again") from exc
        raise LoadError(path, f"damaged or not a PDF ({message})") from exc
    if len(document) == 0:
        document.close()
        raise LoadError(path, "the PDF has no pages")
    return document


def iter_pdf_pages(ref: FileRef, settings: LoaderSettings) -> Iterator[DocumentItem]:
    """Yield one item per page, rendering lazily (one page in memory at a time).

    Metadata: source, page (1-based), page_count, content hash, page size in points.
    Raises ``LoadError`` when the file cannot be opened or a page cannot be read.
    """
    import pypdfium2 as pdfium

    document = open_pdf(ref.path)
    try:
        page_count = len(document)
        for index in range(page_count):
            number = index + 1
            try:
                page = document[index]
                try:
                    text = page_text(page)
                    image = render_page(page, settings.max_image_pixels, settings.max_render_scale)
                    width, height = page.get_size()
                finally:
                    page.close()
            except pdfium.PdfiumError as exc:
                raise LoadError(ref.path, f"page {number} cannot be read ({exc})") from exc
            metadata = {
                **ref.base_metadata(),
                "page": number,
                "page_count": page_count,
                "page_width_pt": round(float(width), 2),
                "page_height_pt": round(float(height), 2),
            }
            yield DocumentItem(id=ref.item_id(f"p{number:05d}"), text=text, image=image, metadata=metadata)
    finally:
        document.close()
