"""Retrieval evaluation of a TWN under the three reasoning modes, side by side.

The corpus is every distinct positive and hard negative of a data file (the training JSONL
format); each query is ranked by cosine similarity against all of it, or (``candidates=
"own"``, the MMEB protocol) against its positive and its own hard negatives only. Per mode the report
has Recall@1/5/10, MRR, NDCG@10 (one relevant document per query), the think-rate (inputs
that thought / inputs embedded, queries and documents together), the mean thought tokens
per embedded input (and per query), and the wall time of embedding queries and corpus. The
mode applies to the roles in ``think_roles`` (both by default; the others never think);
``adaptive`` uses the checkpoint's gate threshold, a given ``threshold`` (e.g. calibrated on a
validation split), or, with ``think_ratio``, the threshold calibrated per role on these
inputs' gate scores to think on that fraction.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from twn_rag.budget import MODES, ReasoningBudget, calibrate
from twn_rag.config import ROLES
from twn_rag.embedder import EmbeddingResult, TWNEmbedder
from twn_rag.training.data import RetrievalExample, document_corpus, load_examples

EVAL_MODES = ("never", "always", "adaptive")
RECALL_CUTOFFS = (1, 5, 10)
CANDIDATE_SETS = ("corpus", "own")


@dataclass
class ModeReport:
    """The metrics of one reasoning mode."""

    mode: str
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    ndcg_at_10: float
    think_rate: float
    query_think_rate: float
    document_think_rate: float
    mean_thought_tokens: float
    query_mean_thought_tokens: float
    wall_time_s: float
    query_threshold: float | None = None
    document_threshold: float | None = None


@dataclass
class EvaluationReport:
    """Reports per mode, with what was evaluated."""

    model: str
    data: str
    queries: int
    documents: int
    candidates: str
    modes: dict[str, ModeReport]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data": self.data,
            "queries": self.queries,
            "documents": self.documents,
            "candidates": self.candidates,
            "modes": {name: asdict(report) for name, report in self.modes.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """The modes side by side as a plain-text table."""
        header = ["mode", "R@1", "R@5", "R@10", "MRR", "NDCG@10", "think-rate", "thought tok", "tok/query", "time s"]
        rows = [
            [
                r.mode,
                *(f"{v:.3f}" for v in (r.recall_at_1, r.recall_at_5, r.recall_at_10, r.mrr, r.ndcg_at_10)),
                f"{r.think_rate:.1%}",
                f"{r.mean_thought_tokens:.1f}",
                f"{r.query_mean_thought_tokens:.1f}",
                f"{r.wall_time_s:.2f}",
            ]
            for r in self.modes.values()
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in [header, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def positive_ranks(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    positives: Sequence[int],
    candidates: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """1-based rank of each query's positive among all documents, or among its own
    ``candidates[i]`` (plus its positive) when given. Documents scoring strictly higher count;
    ties go to the positive."""
    scores = query_vectors @ doc_vectors.T
    positive_scores = scores[np.arange(len(positives)), positives]
    higher = scores > positive_scores[:, None]
    if candidates is not None:
        allowed = np.zeros_like(higher)
        for row, indices in enumerate(candidates):
            allowed[row, list(indices)] = True
        higher &= allowed
    return 1 + higher.sum(axis=1)


def retrieval_metrics(ranks: np.ndarray) -> dict[str, float]:
    """Recall@1/5/10, MRR and NDCG@10 from the ranks of the single relevant document."""
    ranks = np.asarray(ranks, dtype=float)
    metrics = {f"recall_at_{k}": float((ranks <= k).mean()) for k in RECALL_CUTOFFS}
    metrics["mrr"] = float((1.0 / ranks).mean())
    metrics["ndcg_at_10"] = float(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1), 0.0).mean())
    return metrics


def evaluate(
    embedder: TWNEmbedder,
    data: str | Path | Sequence[RetrievalExample],
    modes: Sequence[str] = EVAL_MODES,
    *,
    think_ratio: float | None = None,
    candidates: str = "corpus",
    think_roles: Sequence[str] = ROLES,
    threshold: float | None = None,
    batch_size: int = 8,
    show_progress: bool = False,
) -> EvaluationReport:
    """Evaluate ``embedder`` on ``data`` (a JSONL path or loaded examples) in each of
    ``modes``. ``candidates="corpus"`` ranks each query against every document of the file;
    ``"own"`` only against its positive and its own hard negatives (the MMEB protocol, where
    Recall@1 is its accuracy). The thought cache is cleared before each mode so wall times
    compare."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be among {EVAL_MODES}, got {list(modes)}")
    if candidates not in CANDIDATE_SETS:
        raise ValueError(f"candidates must be one of {CANDIDATE_SETS}, got {candidates!r}")
    if think_ratio is not None and not 0.0 <= think_ratio <= 1.0:
        raise ValueError(f"think_ratio must be within 0..1, got {think_ratio}")
    if think_ratio is not None and threshold is not None:
        raise ValueError("give think_ratio or threshold, not both")
    if not think_roles or set(think_roles) - set(ROLES):
        raise ValueError(f"think_roles must be among {ROLES}, got {list(think_roles)}")
    examples = load_examples(data) if isinstance(data, (str, Path)) else list(data)
    queries = [e.query for e in examples]
    documents, positives, negatives = document_corpus(examples)
    own = negatives if candidates == "own" else None
    max_tokens = embedder.config.max_thought_tokens

    def run(query_budget: ReasoningBudget, doc_budget: ReasoningBudget) -> tuple[list, list, float]:
        embedder.thought_cache.clear()
        started = time.perf_counter()
        kwargs = dict(batch_size=batch_size, show_progress=show_progress)
        query_results = embedder.encode(queries, role="query", budget=query_budget, **kwargs)
        doc_results = embedder.encode(documents, role="document", budget=doc_budget, **kwargs)
        return query_results, doc_results, time.perf_counter() - started

    reports: dict[str, ModeReport] = {}
    never_results = None
    ordered = sorted(dict.fromkeys(modes), key=EVAL_MODES.index)
    if "adaptive" in ordered and think_ratio is not None and "never" not in ordered:
        never_results = run(ReasoningBudget(mode="never"), ReasoningBudget(mode="never"))
    for mode in ordered:
        thresholds = (None, None)
        if mode == "adaptive":
            if think_ratio is not None:
                thresholds = (
                    calibrate([r.gate_score for r in never_results[0]], think_ratio),
                    calibrate([r.gate_score for r in never_results[1]], think_ratio),
                )
            else:
                thresholds = tuple(
                    embedder.config.threshold(role) if threshold is None else threshold for role in ROLES
                )
        thresholds = tuple(t if role in think_roles else None for t, role in zip(thresholds, ROLES))
        budgets = [
            ReasoningBudget(
                mode=mode if role in think_roles else "never",
                threshold=t if t is not None else 0.5,
                max_thought_tokens=max_tokens,
            )
            for t, role in zip(thresholds, ROLES)
        ]
        results = run(*budgets)
        if mode == "never":
            never_results = results
        reports[mode] = _mode_report(mode, results, positives, own, thresholds)
    return EvaluationReport(
        model=embedder.model_id,
        data=str(data) if isinstance(data, (str, Path)) else "<examples>",
        queries=len(queries),
        documents=len(documents),
        candidates=candidates,
        modes=reports,
    )


def _mode_report(
    mode: str,
    results: tuple[list[EmbeddingResult], list[EmbeddingResult], float],
    positives: Sequence[int],
    candidates: Sequence[Sequence[int]] | None,
    thresholds: tuple[float | None, float | None],
) -> ModeReport:
    query_results, doc_results, seconds = results
    ranks = positive_ranks(
        np.stack([r.vector for r in query_results]), np.stack([r.vector for r in doc_results]), positives, candidates
    )
    everything = [*query_results, *doc_results]
    return ModeReport(
        mode=mode,
        **retrieval_metrics(ranks),
        think_rate=_think_rate(everything),
        query_think_rate=_think_rate(query_results),
        document_think_rate=_think_rate(doc_results),
        mean_thought_tokens=sum(r.thought_tokens for r in everything) / len(everything),
        query_mean_thought_tokens=sum(r.thought_tokens for r in query_results) / len(query_results),
        wall_time_s=round(seconds, 4),
        query_threshold=_finite(thresholds[0]),
        document_threshold=_finite(thresholds[1]),
    )


def _think_rate(results: Sequence[EmbeddingResult]) -> float:
    return sum(r.thought_used for r in results) / len(results) if results else 0.0


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
