"""Normalising what users pass to ``encode`` into ``EmbeddingInput`` items.

Accepted forms: a ``str`` (text), a PIL image, or a dict with ``text``, ``image`` or
``images`` (PIL, path or bytes), ``video`` (a path or a list of frames) and ``instruction``.
"""

from __future__ import annotations

import hashlib
import io
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from twn_rag.media import MediaError, cap_pixels, load_image, read_video_frames

INPUT_KEYS = frozenset({"text", "image", "images", "video", "video_fps", "instruction"})
_TEXT_PREVIEW_CHARS = 40


class InvalidInputError(ValueError):
    """An input to ``encode`` is unusable: ``index`` is its position in the batch, ``name`` what
    it is (the caller's name for it, e.g. a node id, else a description of the part that
    failed) and ``reason`` what is wrong. The message reads ``input 3 (image /x.png): reason``."""

    def __init__(self, index: int, reason: str, name: str | None = None):
        self.index = index
        self.reason = reason
        self.name = name
        where = f"input {index}" if name is None else f"input {index} ({name})"
        super().__init__(f"{where}: {reason}")


@dataclass
class EmbeddingInput:
    """One input, ready for the processor: text, images and at most one video (a frame list).
    ``text_tokens_original`` is set when ``text`` was cut to a token cap: its token count before
    the cut (``TWNProcessor.truncated``)."""

    text: str = ""
    images: list[Image.Image] = field(default_factory=list)
    video: list[Image.Image] | None = None
    video_fps: float | None = None
    instruction: str | None = None
    text_tokens_original: int | None = None

    @property
    def text_truncated(self) -> bool:
        return self.text_tokens_original is not None

    @property
    def modality(self) -> str:
        kinds = [
            name for name, present in (("text", self.text), ("image", self.images), ("video", self.video)) if present
        ]
        return "+".join(kinds)

    def content_hash(self) -> str:
        """A digest of the content (text, pixels, frames), independent of the instruction."""
        digest = hashlib.sha256()
        digest.update(self.text.encode("utf-8"))
        for tag, images in (("image", self.images), ("video", self.video or [])):
            for image in images:
                digest.update(f"|{tag}:{image.size}:{image.mode}|".encode())
                digest.update(image.tobytes())
        return digest.hexdigest()


def _preview(text: str) -> str:
    return repr(text if len(text) <= _TEXT_PREVIEW_CHARS else text[:_TEXT_PREVIEW_CHARS] + "...")


def describe_media(kind: str, source: Any) -> str:
    """``kind`` (``"image"``, ``"video"``, ...) and where it comes from, for error messages. A
    path is named in full: it is what the user has to go and fix."""
    if isinstance(source, (str, Path)):
        return f"{kind} {source}"
    if isinstance(source, (bytes, bytearray)):
        return f"{kind} of {len(source)} bytes"
    if isinstance(source, io.BytesIO):
        return f"{kind} of {source.getbuffer().nbytes} bytes"
    if isinstance(source, Image.Image):
        return f"{kind} (PIL {source.width}x{source.height})"
    return f"{kind} of type {type(source).__name__}"


def describe_input(item: Any) -> str:
    """A short description of one ``encode`` input, for error messages: its media source, else
    the start of its text, else a shortened ``repr``."""
    if isinstance(item, str):
        return _preview(item)
    if isinstance(item, EmbeddingInput):
        return _preview(item.text) if item.text else item.modality or "an empty EmbeddingInput"
    if isinstance(item, Image.Image):
        return describe_media("image", item)
    if isinstance(item, dict):
        images = ([item["image"]] if item.get("image") is not None else []) + list(item.get("images") or [])
        if images:
            return describe_media("image", images[0])
        if isinstance(item.get("video"), (str, Path)):
            return describe_media("video", item["video"])
        if isinstance(item.get("text"), str) and item["text"]:
            return _preview(item["text"])
        return f"dict with keys {sorted(item)}"
    return reprlib.repr(item)


class _NamedInput:
    """One input being parsed, with its position and the caller's name for it: makes the errors
    that describe it."""

    def __init__(self, item: Any, index: int, name: str | None):
        self.item, self.index, self.name = item, index, name

    def error(self, reason: str, part: str | None = None) -> InvalidInputError:
        """The error for ``reason``; named by the caller's name, else by ``part`` (a
        description of the part that failed), else by a description of the whole input."""
        if self.name is not None:
            return InvalidInputError(self.index, reason, self.name)
        return InvalidInputError(self.index, reason, part if part is not None else describe_input(self.item))

    def image(self, source: Any, max_pixels: int, kind: str = "image") -> Image.Image:
        try:
            return cap_pixels(load_image(source), max_pixels)
        except MediaError as exc:
            raise self.error(str(exc), describe_media(kind, source)) from exc


def parse_input(
    item: Any,
    index: int,
    *,
    max_image_pixels: int,
    video_fps: float,
    max_video_frames: int,
    name: str | None = None,
) -> EmbeddingInput:
    """Turn one user input into an ``EmbeddingInput``; raise ``InvalidInputError`` naming
    ``index``, the input (``name`` when the caller gives one, e.g. a node id, else a
    description of what failed) and the reason when it is empty, unreadable or of an unknown
    type."""
    entry = _NamedInput(item, index, name)
    if isinstance(item, EmbeddingInput):
        parsed = item
    elif isinstance(item, str):
        parsed = EmbeddingInput(text=item)
    elif isinstance(item, Image.Image):
        parsed = EmbeddingInput(images=[entry.image(item, max_image_pixels)])
    elif isinstance(item, dict):
        unknown = sorted(set(item) - INPUT_KEYS)
        if unknown:
            raise entry.error(f"unknown keys {unknown}; allowed: {sorted(INPUT_KEYS)}")
        text = item.get("text") or ""
        if not isinstance(text, str):
            raise entry.error(f"'text' must be a str, got {type(text).__name__}")
        sources = list(item.get("images") or [])
        if item.get("image") is not None:
            sources.insert(0, item["image"])
        images = [entry.image(image, max_image_pixels) for image in sources]
        video, fps = _parse_video(
            entry, item.get("video"), item.get("video_fps"), max_image_pixels, video_fps, max_video_frames
        )
        instruction = item.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise entry.error("'instruction' must be a str")
        parsed = EmbeddingInput(text=text, images=images, video=video, video_fps=fps, instruction=instruction)
    else:
        raise entry.error(f"unsupported input type {type(item).__name__}; pass a str, a PIL image or a dict")
    if not parsed.text.strip() and not parsed.images and not parsed.video:
        raise entry.error("empty input: no text, image or video")
    return parsed


def _parse_video(
    entry: _NamedInput,
    video: Any,
    given_fps: float | None,
    max_pixels: int,
    video_fps: float,
    max_frames: int,
) -> tuple[list[Image.Image] | None, float | None]:
    if video is None:
        return None, None
    if isinstance(video, (str, Path)):
        try:
            frames = read_video_frames(video, video_fps, max_frames)
        except MediaError as exc:
            raise entry.error(str(exc), describe_media("video", video)) from exc
        return [cap_pixels(f.image, max_pixels) for f in frames], video_fps
    if isinstance(video, (list, tuple)):
        if not video:
            raise entry.error("'video' is an empty frame list")
        return [
            entry.image(frame, max_pixels, f"video frame {number}") for number, frame in enumerate(video[:max_frames])
        ], given_fps
    raise entry.error(f"'video' must be a path or a list of frames, got {type(video).__name__}")
