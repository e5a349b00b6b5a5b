"""Batches formed by a token budget: inputs of similar length together, each batch's cost
counted with its padding (rows x longest row), so one long input cannot blow a batch of short
ones up to its length, and no forward pass exceeds what the device was sized for."""

from __future__ import annotations

from collections.abc import Sequence

# Padded positions per forward pass: 8 full pages of the released model (about 1,000 visual
# tokens and a few hundred text tokens each) fit, as do 5 pages at the full text cap (2,048 text
# tokens); activations of a 4 B backbone at this size stay within a few GB.
DEFAULT_MAX_BATCH_TOKENS = 16_384


def token_budget_batches(lengths: Sequence[int], max_rows: int, max_tokens: int | None) -> list[list[int]]:
    """Positions of ``lengths`` (each input's row length in tokens) grouped into batches,
    shortest first (ties by position): each batch holds at most ``max_rows`` rows and, padded
    to its longest row, at most ``max_tokens`` positions (``rows x longest``). An input longer
    than ``max_tokens`` on its own goes alone. ``max_tokens=None`` counts rows only."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        # Shortest first: the input being added is the batch's longest row.
        full = len(current) == max_rows
        over = max_tokens is not None and (len(current) + 1) * lengths[index] > max_tokens
        if current and (full or over):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
