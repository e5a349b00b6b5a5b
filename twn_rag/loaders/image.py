"""Image files (png, jpg, webp...): one item each, pointing at the original file."""

from __future__ import annotations

from collections.abc import Iterator

from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.media import MediaError, cap_pixels, load_image


def iter_image_items(ref: FileRef, settings: LoaderSettings) -> Iterator[DocumentItem]:
    """Yield the image as one item (decoded once, capped to ``max_image_pixels``);
    ``LoadError`` when it cannot be decoded."""
    try:
        image = load_image(ref.path)
    except MediaError as exc:
        raise LoadError(ref.path, str(exc)) from exc
    metadata = {**ref.base_metadata(), "width": image.width, "height": image.height}
    yield DocumentItem(
        id=ref.item_id("img"),
        image=cap_pixels(image, settings.max_image_pixels),
        image_path=ref.source,
        metadata=metadata,
    )
