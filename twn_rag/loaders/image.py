"""Image files (png, jpg, webp...): one item each, pointing at the original file."""

from __future__ import annotations

from collections.abc import Iterator

from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.media import MediaError, decode_image


def iter_image_items(ref: FileRef, settings: LoaderSettings) -> Iterator[DocumentItem]:
    """Yield the image as one item, decoded once at no more than ``max_image_pixels`` (a
    decompression bomb is refused from its header) and padded out of an extreme aspect ratio;
    ``width`` and ``height`` are the file's own. ``LoadError`` when it cannot be decoded."""
    try:
        decoded = decode_image(ref.path, settings.max_image_pixels)
    except MediaError as exc:
        raise LoadError(ref.path, str(exc)) from exc
    width, height = decoded.declared_size
    yield DocumentItem(
        id=ref.item_id("img"),
        image=decoded.image,
        image_path=str(ref.path.expanduser().resolve()),
        metadata={**ref.base_metadata(), "width": width, "height": height},
    )
