"""Reading images and video frames into PIL images, with size and frame caps."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class MediaError(ValueError):
    """An image or video could not be read; the message says which and why."""


@dataclass
class VideoFrame:
    """One decoded frame and its presentation time in seconds."""

    image: Image.Image
    timestamp: float


def load_image(source: Image.Image | str | Path | bytes | io.BytesIO) -> Image.Image:
    """Return an RGB PIL image from a PIL image, a file path, raw bytes or a BytesIO.

    Raises ``MediaError`` for a missing file or bytes that are not a readable image.
    """
    if isinstance(source, Image.Image):
        return source.convert("RGB") if source.mode != "RGB" else source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MediaError(f"image file not found: {path}")
        opener = path
    elif isinstance(source, (bytes, bytearray)):
        opener = io.BytesIO(source)
    elif isinstance(source, io.IOBase):
        opener = source
    else:
        raise MediaError(f"unsupported image type {type(source).__name__}; use PIL, a path or bytes")
    try:
        with Image.open(opener) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise MediaError(f"cannot read image ({exc})") from exc


def cap_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale ``image`` (keeping its aspect ratio) so width*height <= ``max_pixels``."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def iter_video_frames(path: str | Path, fps: float, max_frames: int) -> Iterator[VideoFrame]:
    """Decode ``path`` as a stream, yielding at most ``max_frames`` frames, one every
    ``1/fps`` seconds. Only the yielded frames are kept, so a long video never sits in memory.

    Raises ``MediaError`` when the file is missing, is not a video, or has no decodable frame.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video file not found: {path}")
    if fps <= 0 or max_frames <= 0:
        raise ValueError(f"fps and max_frames must be positive, got {fps} and {max_frames}")
    interval = 1.0 / fps
    yielded = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            next_time = 0.0
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-6 < next_time:
                    continue
                yield VideoFrame(frame.to_image(), float(frame.time))
                yielded += 1
                next_time = frame.time + interval
                if yielded >= max_frames:
                    break
    except av.error.FFmpegError as exc:
        if yielded == 0:
            raise MediaError(f"cannot decode video {path} ({exc})") from exc
        # A truncated tail: keep the frames decoded before the damage.
    if yielded == 0:
        raise MediaError(f"no decodable frame in video {path}")


def read_video_frames(path: str | Path, fps: float, max_frames: int) -> list[VideoFrame]:
    """All frames ``iter_video_frames`` yields, as a list."""
    return list(iter_video_frames(path, fps, max_frames))
