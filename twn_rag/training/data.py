"""The retrieval training/evaluation format: one JSON object per line (JSONL).

Each line is a query, its positive and optional hard negatives::

    {"query": {"text": "What does the red light mean?", "image": "img/panel.png"},
     "positive": {"text": "A red light means the filter needs cleaning.", "image": "pages/p12.png"},
     "negatives": [{"text": "The green light means ready."}, "A plain-text negative"],
     "query_thought": "The user asks about the red indicator on the panel ...",
     "positive_thought": "The page explains the indicator lights ...",
     "instruction": "Find the manual page that answers the question."}

- ``query``, ``positive`` and every negative are a string (text only) or an object with
  ``text``, ``image`` (a path), ``images`` (paths), ``video`` (a path, or a list of frame
  image paths), ``video_fps`` and ``instruction``; at least one of text, image(s), video.
- Paths are relative to the JSONL file's folder (absolute paths are kept).
- ``query_thought`` / ``positive_thought``: optional reference thoughts (used by SFT).
- ``instruction``: optional per-pair task instruction for the query (the query object's own
  ``instruction`` wins); documents use their own ``instruction`` or the checkpoint's default.
- ``id``: optional, any string or number, kept for reports.
- ``think_view_only``: optional, ``true`` for a pair whose thoughts are not facts to learn
  (e.g. counterfactual thoughts that teach the embedding to follow what a thought says, not
  the names around it): SFT uses it only in the embedding's think view; the reasoning adapter
  never learns its thoughts and the no-think view never sees it.
- Blank lines are skipped. A malformed line raises ``DataFormatError`` naming the file, the
  line number and the reason; missing media files are found when the file is loaded, and
  unreadable ones when their example is embedded (``InvalidInputError`` naming file and line).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twn_rag.inputs import EmbeddingInput

RECORD_KEYS = frozenset(
    {"id", "query", "positive", "negatives", "query_thought", "positive_thought", "instruction", "think_view_only"}
)
SIDE_KEYS = frozenset({"text", "image", "images", "video", "video_fps", "instruction"})


class DataFormatError(ValueError):
    """A training/evaluation file has a bad line; ``path`` and ``line`` say where."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class RetrievalExample:
    """One line of a data file: input dicts (as ``TWNEmbedder.encode`` accepts them, with
    absolute media paths), optional reference thoughts, and where the line came from."""

    query: dict
    positive: dict
    negatives: tuple[dict, ...]
    query_thought: str | None
    positive_thought: str | None
    path: str
    line: int
    id: str | None = None
    think_view_only: bool = False

    @property
    def source(self) -> str:
        return f"{self.path}:{self.line}"

    def error(self, reason: str) -> DataFormatError:
        return DataFormatError(self.path, self.line, reason)


def load_examples(path: str | Path) -> list[RetrievalExample]:
    """Read and validate every line of a JSONL data file.

    Raises ``DataFormatError`` (file, line, reason) for the first bad line, and
    ``FileNotFoundError`` when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            examples.append(parse_record(record, path, number))
    if not examples:
        raise DataFormatError(path, 0, "the file holds no examples")
    return examples


def parse_record(record: Any, path: str | Path, line: int) -> RetrievalExample:
    """Validate one decoded JSON line (see the module docstring); paths resolve against
    ``path``'s folder."""
    path = Path(path)

    def fail(reason: str) -> DataFormatError:
        return DataFormatError(path, line, reason)

    if not isinstance(record, dict):
        raise fail(f"each line must be a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - RECORD_KEYS)
    if unknown:
        raise fail(f"unknown keys {unknown}; allowed: {sorted(RECORD_KEYS)}")
    for key in ("query", "positive"):
        if key not in record:
            raise fail(f"missing '{key}'")
    base = path.parent
    query = _parse_side(record["query"], "query", base, fail)
    positive = _parse_side(record["positive"], "positive", base, fail)
    negatives = record.get("negatives") or []
    if not isinstance(negatives, list):
        raise fail(f"'negatives' must be a list, got {type(negatives).__name__}")
    parsed_negatives = tuple(_parse_side(n, f"negatives[{i}]", base, fail) for i, n in enumerate(negatives))
    for key in ("query_thought", "positive_thought", "instruction"):
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise fail(f"'{key}' must be a non-empty string")
    if record.get("instruction") and "instruction" not in query:
        query["instruction"] = record["instruction"]
    think_view_only = record.get("think_view_only", False)
    if not isinstance(think_view_only, bool):
        raise fail("'think_view_only' must be true or false")
    if think_view_only and not (record.get("query_thought") or record.get("positive_thought")):
        raise fail("'think_view_only' needs a query_thought or a positive_thought")
    example_id = record.get("id")
    if example_id is not None and not isinstance(example_id, (str, int)):
        raise fail("'id' must be a string or a number")
    return RetrievalExample(
        query=query,
        positive=positive,
        negatives=parsed_negatives,
        query_thought=record.get("query_thought"),
        positive_thought=record.get("positive_thought"),
        path=str(path),
        line=line,
        id=None if example_id is None else str(example_id),
        think_view_only=think_view_only,
    )


def _parse_side(value: Any, name: str, base: Path, fail) -> dict:
    if isinstance(value, str):
        if not value.strip():
            raise fail(f"'{name}' is an empty string")
        return {"text": value}
    if not isinstance(value, dict):
        raise fail(f"'{name}' must be a string or an object, got {type(value).__name__}")
    unknown = sorted(set(value) - SIDE_KEYS)
    if unknown:
        raise fail(f"'{name}' has unknown keys {unknown}; allowed: {sorted(SIDE_KEYS)}")
    side: dict = {}
    text = value.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise fail(f"'{name}.text' must be a string")
        side["text"] = text
    images = ([value["image"]] if value.get("image") is not None else []) + list(value.get("images") or [])
    if images:
        side["images"] = [_media_path(p, f"{name} image", base, fail) for p in images]
    video = value.get("video")
    if video is not None:
        if isinstance(video, list):
            if not video:
                raise fail(f"'{name}.video' is an empty frame list")
            side["video"] = [_media_path(p, f"{name} video frame", base, fail) for p in video]
        else:
            side["video"] = _media_path(video, f"{name} video", base, fail)
    fps = value.get("video_fps")
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
            raise fail(f"'{name}.video_fps' must be a positive number")
        side["video_fps"] = float(fps)
    instruction = value.get("instruction")
    if instruction is not None:
        if not isinstance(instruction, str) or not instruction.strip():
            raise fail(f"'{name}.instruction' must be a non-empty string")
        side["instruction"] = instruction
    if not (side.get("text") or "").strip() and "images" not in side and "video" not in side:
        raise fail(f"'{name}' is empty: give text, image(s) or a video")
    return side


def _media_path(value: Any, what: str, base: Path, fail) -> str:
    if not isinstance(value, str) or not value:
        raise fail(f"{what} must be a path string, got {type(value).__name__}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise fail(f"{what} not found: {path}")
    return str(path)


def side_key(side: dict) -> str:
    """A key equal for equal input dicts (to find the same document twice)."""
    return json.dumps(side, sort_keys=True)


def document_corpus(examples: Sequence[RetrievalExample]) -> tuple[list[dict], list[int], list[list[int]]]:
    """The distinct documents of ``examples`` (positives and hard negatives, in order of first
    appearance), the index of each example's positive among them, and of its hard negatives."""
    keys: dict[str, int] = {}
    documents: list[dict] = []

    def index(side: dict) -> int:
        key = side_key(side)
        if key not in keys:
            keys[key] = len(documents)
            documents.append(side)
        return keys[key]

    positives, negatives = [], []
    for example in examples:
        positives.append(index(example.positive))
        negatives.append([index(side) for side in example.negatives])
    return documents, positives, negatives


def prepare_inputs(embedder, sides: Sequence[dict], examples: Sequence[RetrievalExample]) -> list[EmbeddingInput]:
    """Load the media of ``sides`` (input dicts, ``sides[i]`` from ``examples[i]``) with the
    embedder's caps; an unreadable image or video raises ``InvalidInputError`` naming the
    file and line of its example."""
    return embedder.prepare(sides, names=[example.source for example in examples])
