import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twn_rag.budget import BudgetLedger, ReasoningBudget, calibrate

scores_st = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=0, max_size=20)


def spend(budget: ReasoningBudget, batches, tokens_per_thought):
    """Drive the budget like the embedder does: select, then record the tokens spent."""
    chosen_all = []
    for scores in batches:
        chosen = budget.select(scores)
        chosen_all.append(chosen)
        budget.record([min(tokens_per_thought, budget.max_thought_tokens)] * len(chosen))
    return chosen_all


def test_adaptive_takes_highest_scores_above_threshold():
    budget = ReasoningBudget(mode="adaptive", threshold=0.5, max_think_ratio=0.5)
    assert budget.select([0.9, 0.2, 0.6, 0.7]) == [0, 3]
    assert budget.ledger.items_seen == 4


def test_ratio_cap_is_cumulative_across_calls():
    budget = ReasoningBudget(mode="always", max_think_ratio=0.5)
    spend(budget, [[0.1, 0.1], [0.9, 0.9]], 3)
    assert budget.ledger.items_thought == 2
    assert budget.select([1.0]) == []  # 3 of 5 would exceed 0.5


def test_token_budget_reserves_max_thought_tokens():
    budget = ReasoningBudget(mode="always", max_thought_tokens=10, token_budget=25)
    assert budget.select([0.1, 0.2, 0.3]) == [0, 1]
    budget.record([4, 4])
    assert budget.select([0.5, 0.6]) == [0]  # 8 spent + 10 reserved <= 25; +20 would not be
    budget.record([10])
    assert budget.select([0.5]) == []  # 18 spent + 10 reserved > 25
    assert budget.ledger.thought_tokens == 18


def test_selection_is_deterministic_with_ties():
    a = ReasoningBudget(threshold=0.5, max_think_ratio=0.34)
    b = ReasoningBudget(threshold=0.5, max_think_ratio=0.34)
    scores = [0.8, 0.8, 0.8, 0.1, 0.1, 0.1]
    assert a.select(scores) == b.select(scores) == [0, 1]


def test_json_round_trip_keeps_ledger():
    budget = ReasoningBudget(mode="adaptive", threshold=0.3, max_think_ratio=0.4, token_budget=100)
    spend(budget, [[0.9, 0.1, 0.8]], 7)
    restored = ReasoningBudget.from_json(budget.to_json())
    assert restored == budget
    assert json.loads(budget.to_json())["ledger"]["thought_tokens"] == budget.ledger.thought_tokens


def test_invalid_settings_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="mode"):
        ReasoningBudget(mode="sometimes")
    with pytest.raises(ValueError, match="max_think_ratio"):
        ReasoningBudget(max_think_ratio=1.5)
    with pytest.raises(ValueError, match="max_thought_tokens"):
        ReasoningBudget(max_thought_tokens=0)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_calibrate_hits_target_ratio(target):
    scores = [i / 100 for i in range(100)]
    threshold = calibrate(scores, target)
    assert sum(s >= threshold for s in scores) == round(target * 100)


def test_calibrated_budget_is_adaptive_with_that_threshold():
    budget = ReasoningBudget(mode="never").calibrated([0.1, 0.2, 0.3, 0.4], 0.5)
    assert budget.mode == "adaptive"
    assert budget.select([0.1, 0.2, 0.3, 0.4]) == [2, 3]


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(scores_st, max_size=8),
    ratio=st.one_of(st.none(), st.floats(0.0, 1.0)),
    token_budget=st.one_of(st.none(), st.integers(0, 200)),
    max_tokens=st.integers(1, 30),
    spent=st.integers(0, 30),
    mode=st.sampled_from(["adaptive", "always", "never"]),
    threshold=st.floats(0.0, 1.0),
)
def test_no_sequence_of_calls_exceeds_the_caps(batches, ratio, token_budget, max_tokens, spent, mode, threshold):
    budget = ReasoningBudget(
        mode=mode,
        threshold=threshold,
        max_think_ratio=ratio,
        max_thought_tokens=max_tokens,
        token_budget=token_budget,
    )
    chosen = spend(budget, batches, spent)
    ledger = budget.ledger
    if ratio is not None:
        assert ledger.items_thought <= ratio * ledger.items_seen + 1e-9
    if token_budget is not None:
        assert ledger.thought_tokens <= token_budget
    if mode == "never":
        assert ledger.items_thought == 0
    if mode == "adaptive":
        for scores, picked in zip(batches, chosen):
            assert all(scores[i] >= threshold for i in picked)


@settings(max_examples=100, deadline=None)
@given(batches=st.lists(scores_st, max_size=8), max_tokens=st.integers(1, 30), token_budget=st.integers(0, 300))
def test_always_thinks_on_every_input_within_the_token_budget(batches, max_tokens, token_budget):
    budget = ReasoningBudget(mode="always", max_thought_tokens=max_tokens, token_budget=token_budget)
    for scores in batches:
        room = (token_budget - budget.ledger.thought_tokens) // max_tokens
        chosen = budget.select(scores)
        assert chosen == list(range(min(len(scores), room)))
        budget.record([max_tokens] * len(chosen))
    unlimited = ReasoningBudget(mode="always")
    total = sum(len(spend_batch) for spend_batch in spend(unlimited, batches, 5))
    assert total == sum(len(s) for s in batches)


def test_select_counted_chooses_among_items_already_seen_without_counting_them_again():
    budget = ReasoningBudget(threshold=0.3, max_think_ratio=0.25, ledger=BudgetLedger(items_seen=12, items_thought=1))
    scores = [0.2, 0.9, 0.5, 0.9, 0.4, 0.1]
    # floor(0.25 * 12) - 1 = 2 more may think: the two best candidates, ties by position.
    assert budget.select_counted(scores) == [1, 3]
    assert budget.ledger == BudgetLedger(items_seen=12, items_thought=1)
    capped = ReasoningBudget(threshold=0.3, max_thought_tokens=4, token_budget=9, ledger=BudgetLedger(items_seen=6))
    assert capped.select_counted(scores) == [1, 3]  # 2 x 4 reserved fit in 9, a third does not
    assert ReasoningBudget(mode="never", ledger=BudgetLedger(items_seen=6)).select_counted(scores) == []
