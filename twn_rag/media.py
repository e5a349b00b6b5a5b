"""Reading images and video frames into PIL images the model accepts: decoded within a pixel
cap (never a whole decompression bomb), downscaled, and padded out of extreme aspect ratios."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# The largest bitmap decoded from an image file: 8192 x 8192 pixels (192 MB as RGB). PNG and
# most formats decode only whole, so an image declaring more is refused from its header (a
# decompression bomb, or a scan to downscale first); JPEG decodes at 1/2 to 1/8 scale
# (``Image.draft``), so a JPEG may declare up to 64 times more.
MAX_DECODED_PIXELS = 8192 * 8192
# The Qwen-VL processors refuse an image whose long side exceeds 200 times its short side;
# beyond this ratio the short side is padded. Half the limit, so later rounding stays below it.
MAX_ASPECT_RATIO = 100
# Padding colours: white for pages and pictures (paper), black for video frames (letterbox).
IMAGE_FILL = "white"
FRAME_FILL = "black"
# Modes that ``Image.reduce`` cannot average; they are converted before reducing.
_UNREDUCIBLE_MODES = frozenset({"1", "P", "I;16", "I;16B", "I;16L"})


class MediaError(ValueError):
    """An image or video could not be read; the message says which and why."""


@dataclass
class VideoFrame:
    """One decoded frame and its presentation time in seconds."""

    image: Image.Image
    timestamp: float


@dataclass
class DecodedImage:
    """An image as ``decode_image`` returns it, with the size its file declares."""

    image: Image.Image
    declared_size: tuple[int, int]


def capped_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """``size`` scaled down (aspect kept) so that width*height <= ``max_pixels``."""
    width, height = size
    if width * height <= max_pixels:
        return size
    scale = math.sqrt(max_pixels / (width * height))
    width, height = max(1, int(width * scale)), max(1, int(height * scale))
    if width * height > max_pixels:  # the short side was raised to one pixel: shorten the long one
        width, height = (max_pixels // height, height) if width >= height else (width, max_pixels // width)
    return width, height


def fitted_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The size ``fit_image`` scales content of ``size`` to, before padding: within
    ``max_pixels`` once padded to ``MAX_ASPECT_RATIO``."""
    capped = capped_size(size, max_pixels)
    if max(capped) <= MAX_ASPECT_RATIO * min(capped):
        return capped
    # Padded to long x ceil(long / ratio): the longest long side whose padded area fits.
    width, height = size
    long_side, short_side = max(size), min(size)
    long_fit = min(long_side, math.isqrt(max_pixels * MAX_ASPECT_RATIO))
    padded_short = math.ceil(long_fit / MAX_ASPECT_RATIO)
    if long_fit * padded_short > max_pixels:
        long_fit = max(1, max_pixels // padded_short)
    short_fit = min(padded_short, max(1, round(short_side * long_fit / long_side)))
    return (long_fit, short_fit) if width >= height else (short_fit, long_fit)


def pad_to_aspect(image: Image.Image, fill: str = IMAGE_FILL) -> Image.Image:
    """``image`` centred on a ``fill`` canvas whose short side is at least 1/``MAX_ASPECT_RATIO``
    of its long side; ``image`` itself when it is within that ratio already."""
    width, height = image.size
    needed = math.ceil(max(width, height) / MAX_ASPECT_RATIO)
    if min(width, height) >= needed:
        return image
    size = (width, needed) if width >= height else (needed, height)
    canvas = Image.new(image.mode, size, fill)
    canvas.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def fit_image(image: Image.Image, max_pixels: int, fill: str = IMAGE_FILL) -> Image.Image:
    """Downscale ``image`` (aspect kept) and pad an extreme aspect ratio with ``fill``, so that
    the result is within ``max_pixels`` and ``MAX_ASPECT_RATIO``: all of the content, in a shape
    the processor accepts."""
    size = fitted_size(image.size, max_pixels)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return pad_to_aspect(image, fill)


def cap_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale ``image`` (keeping its aspect ratio) so width*height <= ``max_pixels``."""
    size = capped_size(image.size, max_pixels)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def _opener(source: str | Path | bytes | io.IOBase):
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            reason = "not a regular file" if path.exists() else "image file not found"
            raise MediaError(f"{reason}: {path}")
        return path
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    if isinstance(source, io.BytesIO):  # read whole whatever its position; the caller's position is kept
        return io.BytesIO(source.getvalue())
    if isinstance(source, io.IOBase):
        return source
    raise MediaError(f"unsupported image type {type(source).__name__}; use PIL, a path or bytes")


def _refuse_if_too_large(size: tuple[int, int], declared: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_DECODED_PIXELS:
        raise MediaError(
            f"image declares {declared[0]}x{declared[1]} pixels, more than the {MAX_DECODED_PIXELS:,} "
            "twn-rag decodes (a decompression bomb, or a scan to downscale first): refused before decoding"
        )


def _decode_opened(opened: Image.Image, max_pixels: int) -> Image.Image:
    """Decode a lazily opened image at the smallest size that still gives ``max_pixels``:
    JPEG at a reduced DCT scale, other formats whole (within the cap), then reduced before
    the RGB conversion, so no full-size RGB copy of a large image is made."""
    declared = opened.size
    target = fitted_size(declared, max_pixels)
    if target != declared and opened.format == "JPEG":
        opened.draft("RGB", target)  # never below ``target``; at most 8x smaller per side
    _refuse_if_too_large(opened.size, declared)
    opened.load()
    image: Image.Image = opened
    factor = min(image.width // target[0], image.height // target[1])
    if factor >= 2:
        if image.mode in _UNREDUCIBLE_MODES:
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        image = image.reduce(factor)
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_image(source: Image.Image | str | Path | bytes | io.IOBase, max_pixels: int | None = None) -> DecodedImage:
    """Read an RGB image from a PIL image, a file path, raw bytes or a file object (a
    ``BytesIO`` is read whole, whatever its position), within ``max_pixels`` when given and
    ``MAX_DECODED_PIXELS`` always, padded out of extreme aspect ratios (``fit_image``).

    Raises ``MediaError`` for a missing file, bytes that are not a readable image, or an image
    that declares more than ``MAX_DECODED_PIXELS`` (refused from its header, before decoding).
    """
    cap = min(max_pixels, MAX_DECODED_PIXELS) if max_pixels is not None else MAX_DECODED_PIXELS
    if isinstance(source, Image.Image):
        image = source.convert("RGB") if source.mode != "RGB" else source
        return DecodedImage(fit_image(image, cap), source.size)
    opener = _opener(source)
    try:
        with Image.open(opener) as opened:
            declared = opened.size
            image = _decode_opened(opened, cap)
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(f"refused before decoding: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError(f"cannot read image ({exc})") from exc
    return DecodedImage(fit_image(image, cap), declared)


def load_image(source: Image.Image | str | Path | bytes | io.IOBase, max_pixels: int | None = None) -> Image.Image:
    """The image of ``decode_image(source, max_pixels)``."""
    return decode_image(source, max_pixels).image


def iter_video_frames(path: str | Path, fps: float, max_frames: int) -> Iterator[VideoFrame]:
    """Decode ``path`` as a stream, yielding at most ``max_frames`` frames, one every
    ``1/fps`` seconds. Only the yielded frames are kept, so a long video never sits in memory.
    Frames of an extreme aspect ratio are letterboxed (``pad_to_aspect``, black).

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
                yield VideoFrame(pad_to_aspect(frame.to_image(), FRAME_FILL), float(frame.time))
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
