"""How loaders sample documents: page resolution, video frame rate, frame cap, clip length."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from twn_rag.config import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_VIDEO_FPS

# One hour of video at one frame per second: a cap against runaway item counts.
DEFAULT_MAX_VIDEO_FRAMES = 3600
# Upper bound on page rendering: 216 dpi, so a tiny page is not blown up to the pixel cap.
DEFAULT_MAX_RENDER_SCALE = 3.0


@dataclass(frozen=True)
class LoaderSettings:
    """``max_image_pixels`` caps a rendered page or a frame (width*height, aspect kept);
    ``video_fps`` and ``max_video_frames`` sample videos; ``clip_frames`` > 1 groups that many
    consecutive sampled frames into one video item instead of one item per frame."""

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    video_fps: float = DEFAULT_VIDEO_FPS
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES
    clip_frames: int = 1
    max_render_scale: float = DEFAULT_MAX_RENDER_SCALE

    def __post_init__(self) -> None:
        if self.max_image_pixels < 64:
            raise ValueError(f"max_image_pixels must be >= 64, got {self.max_image_pixels}")
        if self.video_fps <= 0 or self.max_video_frames < 1:
            raise ValueError(f"video_fps and max_video_frames must be positive, got {self}")
        if self.clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {self.clip_frames}")
        if self.max_render_scale <= 0:
            raise ValueError(f"max_render_scale must be positive, got {self.max_render_scale}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LoaderSettings:
        return cls(**json.loads(text))
