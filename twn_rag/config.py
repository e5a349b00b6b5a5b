"""TWN model configuration (``twn_config.json``): prompts, pooling, gate threshold, media caps."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from twn_rag.budget import check_threshold

CONFIG_FILENAME = "twn_config.json"
# The released checkpoint: what the CLI and the integrations load when given no model.
DEFAULT_MODEL = "zhanglx/TWN-4B"

DEFAULT_INSTRUCTIONS = {
    "query": "Represent the user's input for retrieving relevant documents.",
    "document": "Represent the document for retrieval.",
}
DEFAULT_REASONING_INSTRUCTIONS = {
    "query": "Think briefly about what this query asks for before it is embedded.",
    "document": "Think briefly about what this document contains before it is embedded.",
}
DEFAULT_GATE_THRESHOLD = 0.5
DEFAULT_MAX_THOUGHT_TOKENS = 128
# Media caps: a page image or frame larger than this is downscaled before the processor.
DEFAULT_MAX_IMAGE_PIXELS = 1280 * 28 * 28
DEFAULT_VIDEO_FPS = 1.0
DEFAULT_MAX_VIDEO_FRAMES = 16
# Cap on an input's text, in tokens (images and video are not counted): 2,048 Qwen3-VL tokens
# are about 8,000 characters, twice a dense page, so real pages pass whole; a page whose text
# layer is runaway (hidden text, OCR noise, a table dump) is cut and recorded instead of costing
# tens of thousands of positions on top of its ~1,000 visual tokens.
DEFAULT_MAX_INPUT_TOKENS = 2048
Role = Literal["query", "document"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass
class TWNConfig:
    """What a TWN checkpoint needs beyond its weights. Every field has a default, so a
    checkpoint without ``twn_config.json`` (or with only some keys) loads.

    ``gate_threshold`` is one threshold for both roles, or one per role (``{"query": 0.3,
    "document": 0.5}``, a role left out keeping the default 0.5); ``threshold(role)`` reads it."""

    instructions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INSTRUCTIONS))
    reasoning_instructions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_REASONING_INSTRUCTIONS))
    pooling: str = "mean"
    gate_threshold: float | dict[str, float] = DEFAULT_GATE_THRESHOLD
    gate_activation: str = "gelu"
    max_thought_tokens: int = DEFAULT_MAX_THOUGHT_TOKENS
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    video_fps: float = DEFAULT_VIDEO_FPS
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES
    # None: no cap.
    max_input_tokens: int | None = DEFAULT_MAX_INPUT_TOKENS

    def __post_init__(self) -> None:
        if self.pooling != "mean":
            raise ValueError(f"twn_config pooling must be 'mean', got {self.pooling!r}")
        if self.max_input_tokens is not None and self.max_input_tokens < 1:
            raise ValueError(f"twn_config max_input_tokens must be >= 1 or null, got {self.max_input_tokens}")
        if isinstance(self.gate_threshold, dict):
            unknown = sorted(set(self.gate_threshold) - set(ROLES))
            if unknown:
                raise ValueError(f"twn_config gate_threshold has unknown roles {unknown}; roles: {list(ROLES)}")
            self.gate_threshold = {role: self.gate_threshold.get(role, DEFAULT_GATE_THRESHOLD) for role in ROLES}
        for role in ROLES:
            check_threshold(self.threshold(role), f"twn_config gate_threshold for {role}s")
        self.instructions = {**DEFAULT_INSTRUCTIONS, **self.instructions}
        self.reasoning_instructions = {
            **DEFAULT_REASONING_INSTRUCTIONS,
            **self.reasoning_instructions,
        }

    def threshold(self, role: Role) -> float:
        """The gate threshold of ``role``'s inputs."""
        if isinstance(self.gate_threshold, dict):
            return float(self.gate_threshold[role])
        return float(self.gate_threshold)

    def prompts(self, role: str, task: str | None = None) -> tuple[str, str]:
        """``(embedding instruction, reasoning prompt)`` for an input of ``role`` whose own task
        instruction is ``task``: the task replaces the role's embedding instruction and is put
        in front of the role's reasoning prompt."""
        base = self.reasoning_instructions[role]
        return task or self.instructions[role], (f"{task}\n{base}" if task else base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TWNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{CONFIG_FILENAME} has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> TWNConfig:
        """Read ``twn_config.json`` from ``checkpoint_dir``; defaults when the file is absent."""
        path = Path(checkpoint_dir) / CONFIG_FILENAME
        if not path.exists():
            return cls()
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self, checkpoint_dir: str | Path) -> None:
        path = Path(checkpoint_dir) / CONFIG_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
