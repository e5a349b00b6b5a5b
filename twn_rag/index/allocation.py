"""Pass 2 of ``TWNIndex.add``: which of an index's non-final items may think, chosen over the
whole index so that the choice depends neither on file order, batch size nor workers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twn_rag.budget import ReasoningBudget
from twn_rag.index.passes import ThinkJob
from twn_rag.result_metadata import GATE_SCORE_KEY


def choose_thinkers(budget: ReasoningBudget, pending: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The ids among ``pending`` (non-final records' metadata by id, already counted as seen in
    ``budget``'s ledger) that think: ``ReasoningBudget.select_counted`` over their gate scores
    in id order, so candidates are taken highest score first, ties by id. Returned in that
    order (best first)."""
    ids = sorted(pending)
    scores = [float(pending[i].get(GATE_SCORE_KEY, 0.0)) for i in ids]
    chosen = [ids[position] for position in budget.select_counted(scores)]
    return sorted(chosen, key=lambda i: (-float(pending[i].get(GATE_SCORE_KEY, 0.0)), i))


def think_jobs(chosen: list[str], pending: Mapping[str, Mapping[str, Any]]) -> list[ThinkJob]:
    """The chosen items grouped by source file (each file is loaded once), in source order."""
    jobs: dict[str, ThinkJob] = {}
    for item_id in chosen:
        metadata = pending[item_id]
        source = str(metadata["source"])
        job = jobs.get(source)
        if job is None:
            job = jobs[source] = ThinkJob(
                source, str(metadata["source_type"]), str(metadata.get("content_hash", "")), {}
            )
        job.gate_scores[item_id] = float(metadata.get(GATE_SCORE_KEY, 0.0))
    return [jobs[source] for source in sorted(jobs)]
