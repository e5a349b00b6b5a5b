"""Video with PyAV: sampled frames (one item each), or short clips of several frames."""

from __future__ import annotations

from collections.abc import Iterator

from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.media import MediaError, VideoFrame, cap_pixels, iter_video_frames


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def _frame_item(ref: FileRef, index: int, frame: VideoFrame, max_pixels: int) -> DocumentItem:
    metadata = {**ref.base_metadata(), "timestamp": round(frame.timestamp, 3), "frame_index": index}
    return DocumentItem(
        id=ref.item_id(f"t{_milliseconds(frame.timestamp):09d}"),
        image=cap_pixels(frame.image, max_pixels),
        metadata=metadata,
    )


def _clip_item(ref: FileRef, index: int, frames: list[VideoFrame], settings: LoaderSettings) -> DocumentItem:
    start, end = frames[0].timestamp, frames[-1].timestamp
    metadata = {
        **ref.base_metadata(),
        "timestamp": round(start, 3),
        "end_timestamp": round(end, 3),
        "frame_index": index,
        "frame_count": len(frames),
    }
    return DocumentItem(
        id=ref.item_id(f"c{_milliseconds(start):09d}"),
        frames=[cap_pixels(f.image, settings.max_image_pixels) for f in frames],
        video_fps=settings.video_fps,
        metadata=metadata,
    )


def iter_video_items(ref: FileRef, settings: LoaderSettings) -> Iterator[DocumentItem]:
    """Yield frame items (or clip items when ``settings.clip_frames`` > 1) as the video is
    decoded; only the current frame or clip is held in memory.

    Raises ``LoadError`` when the file is not a decodable video (wrong format, truncated header).
    """
    frames = iter_video_frames(ref.path, settings.video_fps, settings.max_video_frames)
    pending: list[VideoFrame] = []
    first_index = 0
    try:
        for index, frame in enumerate(frames):
            if settings.clip_frames == 1:
                yield _frame_item(ref, index, frame, settings.max_image_pixels)
                continue
            pending.append(frame)
            if len(pending) == settings.clip_frames:
                yield _clip_item(ref, first_index, pending, settings)
                pending, first_index = [], index + 1
    except MediaError as exc:
        raise LoadError(ref.path, str(exc)) from exc
    if pending:
        yield _clip_item(ref, first_index, pending, settings)
