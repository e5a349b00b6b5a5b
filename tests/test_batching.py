"""Token-budget batch forming (``twn_rag/batching.py``)."""

import random

import pytest

from twn_rag.batching import token_budget_batches


def _padded(batch, lengths):
    return len(batch) * max(lengths[i] for i in batch)


@pytest.mark.parametrize("seed", range(5))
def test_batches_hold_every_input_once_within_rows_and_tokens(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(10, 40), rng.randint(200, 1200), rng.randint(3000, 9000)]) for _ in range(60)]
    max_rows, max_tokens = 8, 4096
    batches = token_budget_batches(lengths, max_rows, max_tokens)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_rows
        # Over the budget only when one input alone is: then it is alone.
        assert _padded(batch, lengths) <= max_tokens or len(batch) == 1
    singles = [batch for batch in batches if _padded(batch, lengths) > max_tokens]
    assert singles and all(lengths[batch[0]] > max_tokens for batch in singles)
    # Shortest first: every batch's rows are no longer than the next batch's shortest.
    for before, after in zip(batches, batches[1:]):
        assert max(lengths[i] for i in before) <= min(lengths[i] for i in after)


def test_one_long_input_does_not_pad_short_ones():
    lengths = [20, 22, 25, 21, 23, 24, 26, 900]
    assert token_budget_batches(lengths, 8, None) == [[0, 3, 1, 4, 5, 2, 6, 7]]  # rows only: one batch
    assert token_budget_batches(lengths, 8, 2000) == [[0, 3, 1, 4, 5, 2, 6], [7]]
    assert token_budget_batches(lengths, 3, None) == [[0, 3, 1], [4, 5, 2], [6, 7]]


def test_a_batch_is_filled_up_to_the_budget():
    assert token_budget_batches([100] * 10, 8, 400) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert token_budget_batches([100] * 10, 8, 399) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert token_budget_batches([], 8, 400) == []


@pytest.mark.parametrize(("rows", "tokens", "message"), [(0, 10, "max_rows"), (8, 0, "max_tokens")])
def test_bad_limits_are_named(rows, tokens, message):
    with pytest.raises(ValueError, match=message):
        token_budget_batches([1, 2], rows, tokens)
