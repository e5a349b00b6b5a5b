"""What ``TWNEmbedder.encode`` returns: one ``EmbeddingResult`` per input, gathered in an
``EmbeddingResults`` sequence that also holds every vector as one ``[N, D]`` array."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np


@dataclass
class EmbeddingResult:
    """One encoded input: its L2-normalised float32 vector, the thought it was embedded with
    (``None`` when it did not think), that thought's token count, the gate's p(think), and,
    when its text was cut to the token cap (``max_input_tokens``), the text's token count
    before the cut (``None``: embedded whole)."""

    vector: np.ndarray
    thought: str | None
    thought_tokens: int
    gate_score: float
    text_tokens_original: int | None = None

    @property
    def thought_used(self) -> bool:
        return self.thought is not None

    @property
    def text_truncated(self) -> bool:
        """Whether the input's text was cut to the token cap before it was embedded."""
        return self.text_tokens_original is not None


class EmbeddingResults(Sequence[EmbeddingResult]):
    """The results of one ``encode`` call, in input order: a read-only sequence of
    ``EmbeddingResult`` whose vectors are also one float32 array ``vectors [N, D]`` (each
    result's ``vector`` is a row of it), as sentence-transformers users expect."""

    def __init__(self, results: Iterable[EmbeddingResult], dimension: int):
        results = list(results)
        self.dimension = dimension
        self.vectors = (
            np.stack([r.vector for r in results]).astype(np.float32, copy=False)
            if results
            else np.empty((0, dimension), dtype=np.float32)
        )
        self._results = tuple(dataclasses.replace(r, vector=row) for r, row in zip(results, self.vectors))

    @overload
    def __getitem__(self, index: int) -> EmbeddingResult: ...

    @overload
    def __getitem__(self, index: slice) -> EmbeddingResults: ...

    def __getitem__(self, index: int | slice) -> EmbeddingResult | EmbeddingResults:
        if isinstance(index, slice):
            return EmbeddingResults(self._results[index], self.dimension)
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[EmbeddingResult]:
        return iter(self._results)

    def __repr__(self) -> str:
        thought = sum(r.thought_used for r in self._results)
        return f"EmbeddingResults({len(self)} vectors of dimension {self.dimension}, {thought} thought)"

    @property
    def thoughts(self) -> list[str | None]:
        """Each input's thought (``None`` where it did not think)."""
        return [r.thought for r in self._results]

    @property
    def thought_tokens(self) -> list[int]:
        """Each input's thought length in tokens (0 where it did not think)."""
        return [r.thought_tokens for r in self._results]

    @property
    def text_truncated(self) -> list[bool]:
        """Whether each input's text was cut to the token cap before it was embedded."""
        return [r.text_truncated for r in self._results]

    @property
    def gate_scores(self) -> np.ndarray:
        """Each input's gate p(thinking helps), ``[N]`` float32."""
        return np.array([r.gate_score for r in self._results], dtype=np.float32)
