"""What the tests of the framework integrations (``integrations/*/tests/``) share: short
budgets, a brute-force ranking, and a check that async work leaves the event loop free."""

from __future__ import annotations

import numpy as np

from twn_rag import ReasoningBudget


def never() -> ReasoningBudget:
    """A budget under which nothing thinks."""
    return ReasoningBudget(mode="never")


def always(tokens: int = 4) -> ReasoningBudget:
    """A budget under which every input thinks, at most ``tokens`` tokens each."""
    return ReasoningBudget(mode="always", max_thought_tokens=tokens)


def top_ids(query: list[float], ids: list[str], vectors, k: int) -> list[str]:
    """Brute-force cosine ranking (vectors are L2-normalised)."""
    scores = np.asarray(vectors, dtype=np.float64) @ np.asarray(query, dtype=np.float64)
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


async def with_loop_ticks(work):
    """Await ``work`` (a coroutine) while a second task counts event-loop turns; returns
    ``(result, ticks)``. Work that blocks the loop leaves ticks near zero."""
    import asyncio

    ticks = 0
    in_flight = True

    async def ticker():
        nonlocal ticks
        while in_flight:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        in_flight = False
        await task
    return result, ticks
