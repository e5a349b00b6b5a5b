"""Framework-neutral document items: what a loader yields, the embedder reads and the index stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

# Record metadata must be scalar for Chroma; items keep to that from the start.
MetadataValue = str | int | float | bool


def utf8_safe(text: str) -> str:
    """``text`` as valid UTF-8: the bytes of a file name that do not decode (which Python
    carries as surrogate escapes, and Chroma and JSON refuse) written as ``\\xNN``. Text that
    is valid already is returned unchanged, so stored paths of ordinary files do not change."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the file name's own bytes
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


PAGE_IMAGE_FORMAT = ("PNG", ".png")  # lossless: page text stays legible
FRAME_IMAGE_FORMAT = ("JPEG", ".jpg")  # photographic content, much faster to write
JPEG_QUALITY = 90


class LoadError(ValueError):
    """A file could not be loaded. ``path`` names it, ``reason`` says why (and what to do)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class FileFailure:
    """A file that was not loaded (or was skipped), for reports: which file and why. Both are
    kept ``utf8_safe``, so a report can always be printed and serialised."""

    path: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", utf8_safe(str(self.path)))
        object.__setattr__(self, "reason", utf8_safe(self.reason))


@dataclass
class DocumentItem:
    """One unit to embed: a PDF page, a video frame or clip, or an image file.

    ``id`` is stable (file content hash + source + page/timestamp), so re-loading an unchanged
    file gives the same ids. Pixels live in ``image`` (and ``frames`` for a clip) until they are
    written with ``save_image``; ``image_path`` then points at the file (for an image file it is
    the original file). ``metadata`` holds scalars only (source, page or timestamp, hashes...).
    """

    id: str
    text: str = ""
    image: Image.Image | None = None
    image_path: str | None = None
    frames: list[Image.Image] | None = None
    video_fps: float | None = None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        """``text``, ``image``, ``text+image`` or ``video`` (a clip of several frames)."""
        if self.frames:
            return "video"
        has_image = self.image is not None or self.image_path is not None
        if has_image and self.text.strip():
            return "text+image"
        return "image" if has_image else "text"

    def to_input(self) -> dict[str, Any]:
        """The ``TWNEmbedder.encode`` input for this item (in-memory pixels preferred over the file)."""
        data: dict[str, Any] = {}
        if self.text.strip():
            data["text"] = self.text
        if self.frames:
            data["video"] = list(self.frames)
            if self.video_fps is not None:
                data["video_fps"] = self.video_fps
        elif self.image is not None:
            data["image"] = self.image
        elif self.image_path is not None:
            data["image"] = self.image_path
        return data

    def save_image(self, directory: str | Path) -> Path | None:
        """Write the in-memory image (a clip's first frame) under ``directory`` as ``<id>.png``
        (``.jpg`` for video) unless ``image_path`` is already set; returns the image path."""
        if self.image_path is not None:
            return Path(self.image_path)
        image = self.image if self.image is not None else (self.frames[0] if self.frames else None)
        if image is None:
            return None
        fmt, suffix = FRAME_IMAGE_FORMAT if self.metadata.get("source_type") == "video" else PAGE_IMAGE_FORMAT
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{self.id}{suffix}"
        options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {"compress_level": 1}
        image.save(target, format=fmt, **options)
        self.image_path = str(target.resolve())
        return target

    def release_pixels(self) -> None:
        """Drop in-memory pixels once they are embedded and saved, so long runs stay small."""
        if self.image_path is not None:
            self.image = None
            self.frames = None
