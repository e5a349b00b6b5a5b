"""Helpers the integration tests share: short budgets and a brute-force ranking."""

import numpy as np

from twn_rag import ReasoningBudget


def never() -> ReasoningBudget:
    return ReasoningBudget(mode="never")


def always(tokens: int = 4) -> ReasoningBudget:
    return ReasoningBudget(mode="always", max_thought_tokens=tokens)


def top_ids(query: list[float], ids: list[str], vectors, k: int) -> list[str]:
    """Brute-force cosine ranking (vectors are L2-normalised)."""
    scores = np.asarray(vectors, dtype=np.float64) @ np.asarray(query, dtype=np.float64)
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]
