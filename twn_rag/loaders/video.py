"""Video with PyAV: sampled frames (one item each), or short clips of several frames."""

from __future__ import annotations

from collections.abc import Iterator

from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.media import FRAME_FILL, MediaError, VideoFrame, fit_image, iter_video_frames

# A video whose frames stop this long (plus one sampling interval) before its declared
# duration is taken as truncated or damaged.
TRUNCATION_TOLERANCE_S = 0.5


def declared_duration(path) -> float | None:
    """The duration the file's header declares (video stream first, else container), in
    seconds; ``None`` when it declares none or cannot be opened."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                if stream.duration and stream.time_base:
                    return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
    except av.error.FFmpegError:
        return None
    return None


def _check_complete(ref: FileRef, last_timestamp: float, settings: LoaderSettings) -> None:
    """``LoadError`` when decoding ended well before the declared duration: PyAV ends a cut
    file quietly (or the tail failed to decode), so this is how truncation shows."""
    duration = declared_duration(ref.path)
    if duration is None:
        return
    if duration - last_timestamp > 1.0 / settings.video_fps + TRUNCATION_TOLERANCE_S:
        raise LoadError(
            ref.path,
            f"truncated or damaged video: frames end at {last_timestamp:.2f} s but it declares "
            f"{duration:.2f} s (the frames before were read)",
        )


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def _frame_item(ref: FileRef, index: int, frame: VideoFrame, max_pixels: int) -> DocumentItem:
    metadata = {**ref.base_metadata(), "timestamp": round(frame.timestamp, 3), "frame_index": index}
    return DocumentItem(
        id=ref.item_id(f"t{_milliseconds(frame.timestamp):09d}"),
        image=fit_image(frame.image, max_pixels, FRAME_FILL),
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
        frames=[fit_image(f.image, settings.max_image_pixels, FRAME_FILL) for f in frames],
        video_fps=settings.video_fps,
        metadata=metadata,
    )


def iter_video_items(ref: FileRef, settings: LoaderSettings) -> Iterator[DocumentItem]:
    """Yield frame items (or clip items when ``settings.clip_frames`` > 1) as the video is
    decoded; only the current frame or clip is held in memory.

    Raises ``LoadError`` when the file is not a decodable video (wrong format, truncated
    header), or, after the frames that could be read, when it ends well before its declared
    duration (cut or damaged tail).
    """
    frames = iter_video_frames(ref.path, settings.video_fps, settings.max_video_frames)
    pending: list[VideoFrame] = []
    first_index = 0
    count, last_timestamp = 0, 0.0
    try:
        for index, frame in enumerate(frames):
            count, last_timestamp = index + 1, frame.timestamp
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
    if count < settings.max_video_frames:  # sampling ran to the end of the stream
        _check_complete(ref, last_timestamp, settings)
