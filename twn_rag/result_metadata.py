"""The one schema in which every route records how an input was embedded (its thought, gate
score and thought tokens) in scalar record metadata, and the reader that also accepts records
written before that schema.

Written by ``result_metadata`` for ``TWNIndex`` records, ``TWNChroma`` records and the nodes of
the LlamaIndex transformation alike:

- ``twn_thought``: the thought (``""`` when the input did not think);
- ``twn_gate_score``: the gate's p(thinking helps);
- ``twn_thought_tokens``: the thought's length in tokens (0 without one);
- ``twn_thought_used``: whether the input thought (a thought can be generated yet empty, so
  ``twn_thought`` alone cannot say; budget accounting needs it);
- only for an input whose text was cut to the token cap (``max_input_tokens``):
  ``twn_text_truncated`` (``True``) and ``twn_text_tokens_original``, the text's token count
  before the cut (so ``where={"twn_text_truncated": True}`` finds them).

Read by ``recorded_result``, which also accepts the two older schemas: ``TWNIndex``'s
(``thought``, only when there was one, ``gate_score``, ``thought_tokens``, ``thought_used``)
and the integrations' before ``twn_thought_used`` existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Scalars only, never None, so Chroma and other stores accept them.
THOUGHT_KEY = "twn_thought"
GATE_SCORE_KEY = "twn_gate_score"
THOUGHT_TOKENS_KEY = "twn_thought_tokens"
THOUGHT_USED_KEY = "twn_thought_used"
RESULT_METADATA_KEYS = (THOUGHT_KEY, GATE_SCORE_KEY, THOUGHT_TOKENS_KEY, THOUGHT_USED_KEY)
TEXT_TRUNCATED_KEY = "twn_text_truncated"
TEXT_TOKENS_ORIGINAL_KEY = "twn_text_tokens_original"
# Written beside RESULT_METADATA_KEYS only for an input whose text was cut to the token cap.
TEXT_TRUNCATION_KEYS = (TEXT_TRUNCATED_KEY, TEXT_TOKENS_ORIGINAL_KEY)
# The same about a search's query, put beside each hit by the framework retrievers.
QUERY_KEY_PREFIX = "twn_query_"
QUERY_RESULT_METADATA_KEYS = tuple(key.replace("twn_", QUERY_KEY_PREFIX, 1) for key in RESULT_METADATA_KEYS)
QUERY_TEXT_TRUNCATION_KEYS = tuple(key.replace("twn_", QUERY_KEY_PREFIX, 1) for key in TEXT_TRUNCATION_KEYS)
# What TWNIndex wrote before this schema, by the current key.
LEGACY_INDEX_KEYS = {
    THOUGHT_KEY: "thought",
    GATE_SCORE_KEY: "gate_score",
    THOUGHT_TOKENS_KEY: "thought_tokens",
    THOUGHT_USED_KEY: "thought_used",
}


class ThoughtOutcome(Protocol):
    """What ``result_metadata`` records: an ``EmbeddingResult`` or a ``RecordedResult``."""

    thought: str | None
    thought_tokens: int
    gate_score: float
    text_tokens_original: int | None


@dataclass(frozen=True)
class RecordedResult:
    """How a stored record was embedded, as its metadata says: the thought (``None`` when it did
    not think), its token count, the gate score and, when its text was cut to the token cap, the
    text's token count before the cut (an ``EmbeddingResult`` without the vector)."""

    thought: str | None
    thought_tokens: int
    gate_score: float
    text_tokens_original: int | None = None


def result_metadata(result: ThoughtOutcome) -> dict[str, str | float | int | bool]:
    """``result``'s thought, gate score, thought tokens and whether it thought, under
    ``RESULT_METADATA_KEYS``, and, when its text was cut to the token cap, ``TEXT_TRUNCATION_KEYS``:
    what every route writes beside a vector."""
    metadata: dict[str, str | float | int | bool] = {
        THOUGHT_KEY: result.thought or "",
        GATE_SCORE_KEY: float(result.gate_score),
        THOUGHT_TOKENS_KEY: int(result.thought_tokens),
        THOUGHT_USED_KEY: result.thought is not None,
    }
    if result.text_tokens_original is not None:
        metadata[TEXT_TRUNCATED_KEY] = True
        metadata[TEXT_TOKENS_ORIGINAL_KEY] = int(result.text_tokens_original)
    return metadata


def query_result_metadata(result: ThoughtOutcome) -> dict[str, str | float | int | bool]:
    """``result_metadata`` of a search's query, under ``QUERY_RESULT_METADATA_KEYS``."""
    return {key.replace("twn_", QUERY_KEY_PREFIX, 1): value for key, value in result_metadata(result).items()}


def _schema_of(metadata: Mapping[str, Any]) -> Mapping[str, str] | None:
    """The key names ``metadata`` was written with, by current key: the current ones (also the
    integrations' older schema), ``LEGACY_INDEX_KEYS``, or ``None`` for a record without a result."""
    if GATE_SCORE_KEY in metadata:
        return {key: key for key in RESULT_METADATA_KEYS}
    if LEGACY_INDEX_KEYS[GATE_SCORE_KEY] in metadata:
        return LEGACY_INDEX_KEYS
    return None


def recorded_result(metadata: Mapping[str, Any] | None) -> RecordedResult | None:
    """What record ``metadata`` says about how it was embedded, in the current schema or an older
    one (module docstring); ``None`` for a record that holds no gate score (not written by twn-rag)."""
    metadata = metadata or {}
    keys = _schema_of(metadata)
    if keys is None:
        return None
    thought = metadata.get(keys[THOUGHT_KEY])
    thought_tokens = int(metadata.get(keys[THOUGHT_TOKENS_KEY]) or 0)
    used = metadata.get(keys[THOUGHT_USED_KEY])
    if used is None:  # the integrations' schema before twn_thought_used: "" stood for no thought
        used = bool(thought) or thought_tokens > 0
    original = metadata.get(TEXT_TOKENS_ORIGINAL_KEY)
    return RecordedResult(
        thought=str(thought or "") if used else None,
        thought_tokens=thought_tokens,
        gate_score=float(metadata[keys[GATE_SCORE_KEY]]),
        text_tokens_original=int(original) if original is not None else None,
    )


def current_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Record ``metadata`` with its result keys in the current schema: an older record's keys
    are replaced by ``RESULT_METADATA_KEYS``; other keys, and records without a result, are kept."""
    metadata = dict(metadata or {})
    recorded = recorded_result(metadata)
    if recorded is None:
        return metadata
    if _schema_of(metadata) is LEGACY_INDEX_KEYS:  # the old keys give way to the current ones
        metadata = {key: value for key, value in metadata.items() if key not in LEGACY_INDEX_KEYS.values()}
    return {**metadata, **result_metadata(recorded)}
