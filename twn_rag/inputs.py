"""Normalising what users pass to ``encode`` into ``EmbeddingInput`` items.

Accepted forms: a ``str`` (text), a PIL image, or a dict with ``text``, ``image`` or
``images`` (PIL, path or bytes), ``video`` (a path or a list of frames) and ``instruction``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from twn_rag.media import MediaError, cap_pixels, load_image, read_video_frames

INPUT_KEYS = frozenset({"text", "image", "images", "video", "video_fps", "instruction"})


class InvalidInputError(ValueError):
    """An input to ``encode`` is unusable. ``index`` is its position in the batch."""

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason
        super().__init__(f"input {index}: {reason}")


@dataclass
class EmbeddingInput:
    """One input, ready for the processor: text, images and at most one video (a frame list)."""

    text: str = ""
    images: list[Image.Image] = field(default_factory=list)
    video: list[Image.Image] | None = None
    video_fps: float | None = None
    instruction: str | None = None

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

    def cost(self) -> int:
        """A rough token-count proxy, used to group similar inputs into a batch."""
        pixels = sum(i.width * i.height for i in self.images) + sum(i.width * i.height for i in self.video or [])
        return len(self.text) + pixels // 256


def _load(index: int, source: Any, max_pixels: int) -> Image.Image:
    try:
        return cap_pixels(load_image(source), max_pixels)
    except MediaError as exc:
        raise InvalidInputError(index, str(exc)) from exc


def parse_input(
    item: Any, index: int, *, max_image_pixels: int, video_fps: float, max_video_frames: int
) -> EmbeddingInput:
    """Turn one user input into an ``EmbeddingInput``; raise ``InvalidInputError`` naming
    ``index`` and the reason when it is empty, unreadable or of an unknown type."""
    if isinstance(item, EmbeddingInput):
        parsed = item
    elif isinstance(item, str):
        parsed = EmbeddingInput(text=item)
    elif isinstance(item, Image.Image):
        parsed = EmbeddingInput(images=[_load(index, item, max_image_pixels)])
    elif isinstance(item, dict):
        unknown = sorted(set(item) - INPUT_KEYS)
        if unknown:
            raise InvalidInputError(index, f"unknown keys {unknown}; allowed: {sorted(INPUT_KEYS)}")
        text = item.get("text") or ""
        if not isinstance(text, str):
            raise InvalidInputError(index, f"'text' must be a str, got {type(text).__name__}")
        sources = list(item.get("images") or [])
        if item.get("image") is not None:
            sources.insert(0, item["image"])
        images = [_load(index, source, max_image_pixels) for source in sources]
        video, fps = _parse_video(
            index, item.get("video"), item.get("video_fps"), max_image_pixels, video_fps, max_video_frames
        )
        instruction = item.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise InvalidInputError(index, "'instruction' must be a str")
        parsed = EmbeddingInput(text=text, images=images, video=video, video_fps=fps, instruction=instruction)
    else:
        raise InvalidInputError(
            index, f"unsupported input type {type(item).__name__}; pass a str, a PIL image or a dict"
        )
    if not parsed.text.strip() and not parsed.images and not parsed.video:
        raise InvalidInputError(index, "empty input: no text, image or video")
    return parsed


def _parse_video(
    index: int,
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
            raise InvalidInputError(index, str(exc)) from exc
        return [cap_pixels(f.image, max_pixels) for f in frames], video_fps
    if isinstance(video, (list, tuple)):
        if not video:
            raise InvalidInputError(index, "'video' is an empty frame list")
        return [_load(index, frame, max_pixels) for frame in video[:max_frames]], given_fps
    raise InvalidInputError(index, f"'video' must be a path or a list of frames, got {type(video).__name__}")
