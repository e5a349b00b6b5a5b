import numpy as np
import pytest
from support.long_text import long_page_text

from twn_rag import EmbeddingResult, EmbeddingResults, InvalidInputError, ReasoningBudget
from twn_rag.samples import make_sample_image


@pytest.fixture
def mixed_inputs(sample_video):
    return [
        "What is seven plus five?",
        make_sample_image(seed=1),
        {"text": "a clip", "video": str(sample_video)},
        {"text": "the invoice total", "image": make_sample_image(seed=2)},
        "a much longer text input that needs more tokens than the others to check left padding",
        {"images": [make_sample_image(seed=3), make_sample_image((40, 70), seed=4)]},
    ]


@pytest.fixture
def calls(embedder, monkeypatch):
    """Counts forward passes of the backbone outside ``generate`` and the ``generate`` calls
    (the real ones still run)."""
    counts = {"forward": 0, "generate": 0, "generate_rows": []}
    inner = embedder.model._inner_model()
    handle = inner.register_forward_pre_hook(lambda *a: counts.__setitem__("forward", counts["forward"] + 1))
    real_generate = embedder.model.backbone.generate

    def counting_generate(**kwargs):
        counts["generate"] += 1
        counts["generate_rows"].append(kwargs["input_ids"].shape[0])
        forwards = counts["forward"]
        try:
            return real_generate(**kwargs)
        finally:
            counts["forward"] = forwards

    monkeypatch.setattr(embedder.model.backbone, "generate", counting_generate)
    yield counts
    handle.remove()


def test_results_have_the_documented_shape(embedder, mixed_inputs):
    results = embedder.encode(mixed_inputs, budget=ReasoningBudget(mode="always", max_thought_tokens=6))
    assert len(results) == len(mixed_inputs)
    for r in results:
        assert isinstance(r, EmbeddingResult)
        assert r.vector.dtype == np.float32 and r.vector.shape == (embedder.dimension,)
        assert abs(np.linalg.norm(r.vector) - 1.0) < 1e-5
        assert 0.0 <= r.gate_score <= 1.0
        assert isinstance(r.thought, str) and 0 < r.thought_tokens <= 6


def test_batched_matches_one_at_a_time(embedder, mixed_inputs):
    budget = dict(mode="always", max_thought_tokens=6)
    batched = embedder.encode(mixed_inputs, budget=ReasoningBudget(**budget), batch_size=8)
    embedder.thought_cache.clear()
    single = [embedder.encode([x], budget=ReasoningBudget(**budget))[0] for x in mixed_inputs]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-4)
        assert a.thought == b.thought and a.thought_tokens == b.thought_tokens
        assert abs(a.gate_score - b.gate_score) < 1e-4


def test_no_think_costs_exactly_one_forward_per_batch(embedder, mixed_inputs, calls):
    never = embedder.encode(mixed_inputs, budget=ReasoningBudget(mode="never"), batch_size=4)
    assert calls == {"forward": 2, "generate": 0, "generate_rows": []}
    gate_says_no = ReasoningBudget(mode="adaptive", threshold=1.0)
    adaptive = embedder.encode(mixed_inputs, budget=gate_says_no, batch_size=4)
    assert calls["forward"] == 4 and calls["generate"] == 0
    for a, b in zip(never, adaptive):
        assert a.thought is None and b.thought is None
        np.testing.assert_array_equal(a.vector, b.vector)
        assert a.gate_score == b.gate_score


def test_thinking_inputs_generate_together_in_one_call(embedder, mixed_inputs, calls):
    embedder.thought_cache.clear()
    results = embedder.encode(mixed_inputs, budget=ReasoningBudget(mode="always", max_thought_tokens=5), batch_size=8)
    assert calls["generate"] == 1 and calls["generate_rows"] == [len(mixed_inputs)]
    assert calls["forward"] == 2  # the no-think pass, then the pass with thoughts
    never = embedder.encode(mixed_inputs, budget=ReasoningBudget(mode="never"))
    changed = [np.abs(a.vector - b.vector).max() for a, b in zip(results, never)]
    assert min(changed) > 1e-3  # the thought reaches the embedding


def test_adaptive_thinks_where_the_gate_says_so(embedder, mixed_inputs):
    scores = [r.gate_score for r in embedder.encode(mixed_inputs, budget=ReasoningBudget(mode="never"))]
    threshold = float(np.median(scores))
    results = embedder.encode(mixed_inputs, budget=ReasoningBudget(threshold=threshold, max_thought_tokens=4))
    assert [r.thought is not None for r in results] == [s >= threshold for s in scores]
    assert any(r.thought is None for r in results) and any(r.thought is not None for r in results)


def test_thought_cache_prevents_thinking_twice(embedder, calls):
    embedder.thought_cache.clear()
    before = embedder.thought_cache.stats
    budget = ReasoningBudget(mode="always", max_thought_tokens=5)
    first = embedder.encode(["cache me"], budget=budget)[0]
    second = embedder.encode(["cache me"], budget=budget)[0]
    assert calls["generate"] == 1
    after = embedder.thought_cache.stats
    assert (after.hits - before.hits, after.misses - before.misses, after.entries) == (1, 1, 1)
    assert first.thought == second.thought
    np.testing.assert_array_equal(first.vector, second.vector)
    assert budget.ledger.items_thought == 2  # the budget counts thoughts used, cached or not
    embedder.encode(["cache me"], budget=ReasoningBudget(mode="always", max_thought_tokens=5), instruction="other task")
    assert calls["generate"] == 2  # another instruction is another thought


def test_instructions_per_role_call_and_input(embedder):
    never = ReasoningBudget(mode="never")
    query = embedder.encode(["paris"], role="query", budget=never)[0].vector
    document = embedder.encode(["paris"], role="document", budget=never)[0].vector
    custom = embedder.encode(["paris"], budget=never, instruction="Find the city.")[0].vector
    per_input = embedder.encode([{"text": "paris", "instruction": "Find the city."}], budget=never)[0].vector
    assert np.abs(query - document).max() > 1e-4
    assert np.abs(query - custom).max() > 1e-4
    np.testing.assert_allclose(custom, per_input, atol=1e-6)


def test_encode_query_and_encode_document_name_the_role_and_give_one_array(embedder):
    never = ReasoningBudget(mode="never")
    texts = ["paris", "the invoice total is the sum of the line items"]
    queries = embedder.encode_query(texts, budget=never)
    documents = embedder.encode_document(texts, budget=never)
    assert isinstance(queries, EmbeddingResults) and len(queries) == 2
    assert queries.vectors.shape == (2, embedder.dimension) and queries.vectors.dtype == np.float32
    np.testing.assert_array_equal(queries.vectors, embedder.encode(texts, role="query", budget=never).vectors)
    np.testing.assert_array_equal(documents.vectors, embedder.encode(texts, role="document", budget=never).vectors)
    assert np.abs(queries.vectors - documents.vectors).max() > 1e-4  # each named its role
    for row, result in zip(queries.vectors, queries):
        assert np.shares_memory(row, result.vector)  # one array, each result a row of it
    assert queries.thoughts == [None, None] and queries.thought_tokens == [0, 0]
    np.testing.assert_array_equal(queries.gate_scores, [r.gate_score for r in queries])
    np.testing.assert_array_equal(queries[1:].vectors, queries.vectors[1:])
    assert embedder.encode_document([], budget=never).vectors.shape == (0, embedder.dimension)
    with pytest.raises(TypeError, match="role"):
        embedder.encode_query(texts, role="document")  # the method names the role


def test_encode_results_carry_thoughts_and_gate_scores(embedder):
    budget = ReasoningBudget(mode="adaptive", threshold=0.0, max_thought_tokens=4)
    results = embedder.encode_query(["seven plus five", "the capital of France"], budget=budget)
    assert results.thoughts == [r.thought for r in results] and all(results.thoughts)
    assert results.thought_tokens == [r.thought_tokens for r in results]
    assert results.gate_scores.shape == (2,) and ((results.gate_scores >= 0) & (results.gate_scores <= 1)).all()


def test_ledger_accumulates_across_calls(embedder):
    budget = ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3)
    embedder.encode(["a", "b"], budget=budget)
    embedder.encode(["c", "d", "e", "f"], budget=budget)
    assert budget.ledger.items_seen == 6
    assert budget.ledger.items_thought == 3
    assert 0 < budget.ledger.thought_tokens <= 9


def test_bad_input_fails_before_any_work(embedder, calls):
    with pytest.raises(InvalidInputError, match=r"input 2 \(''\): empty input"):
        embedder.encode(["fine", make_sample_image(), ""])
    with pytest.raises(InvalidInputError, match=r"input 1 \(image of 13 bytes\): cannot read image"):
        embedder.encode(["fine", {"image": b"garbage bytes"}])
    assert calls["forward"] == 0
    with pytest.raises(ValueError, match="role"):
        embedder.encode(["x"], role="passage")


def test_a_single_input_need_not_be_a_list(embedder):
    assert len(embedder.encode("just text", budget=ReasoningBudget(mode="never"))) == 1
    assert len(embedder.encode({"text": "a dict"}, budget=ReasoningBudget(mode="never"))) == 1


PAGE_40K = long_page_text(40_000)


@pytest.fixture
def forward_masks(embedder):
    """The attention mask of every forward pass of the backbone (no generate runs where it is
    used: the budgets never think)."""
    masks = []
    inner = embedder.model._inner_model()
    handle = inner.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs["attention_mask"].clone()), with_kwargs=True
    )
    yield masks
    handle.remove()


def _padded_positions(masks):
    return sum(int(mask.numel() - mask.sum()) for mask in masks)


def test_a_40000_character_page_is_cut_to_the_token_cap_and_says_so(embedder, forward_masks):
    never = ReasoningBudget(mode="never")
    page = {"text": PAGE_40K, "image": make_sample_image(seed=6)}
    tokens = embedder.processor.text_tokens(PAGE_40K)
    assert tokens > 2 * embedder.config.max_input_tokens  # the checkpoint's cap (2048) applies
    capped, short = embedder.encode_document([page, "a short query"], budget=never)
    assert capped.text_truncated and capped.text_tokens_original == tokens
    assert not short.text_truncated and short.text_tokens_original is None
    assert embedder.encode_document([page], budget=never, max_input_tokens=256).text_truncated == [True]
    # The vector is that of the cut text with the page image: the cut is the only change.
    cut_text, _ = embedder.processor.truncate_text(PAGE_40K, 256)
    forward_masks.clear()
    [by_cap] = embedder.encode_document([page], budget=never, max_input_tokens=256)
    [by_hand] = embedder.encode_document([{**page, "text": cut_text}], budget=never, max_input_tokens=None)
    np.testing.assert_array_equal(by_cap.vector, by_hand.vector)
    assert not by_hand.text_truncated
    image_only = embedder.prepare([page["image"]])
    image_row = embedder.processor.embedding_row_lengths(image_only, embedder.prompts(image_only, "document")[0])[0]
    assert image_row + 250 < int(forward_masks[0].sum()) <= image_row + 256  # the text cut, the image whole
    # No cap: the whole text reaches the model.
    text = PAGE_40K[:6000]
    [whole] = embedder.encode_document([text], budget=never, max_input_tokens=None)
    assert not whole.text_truncated and int(forward_masks[-1].sum()) > embedder.processor.text_tokens(text)


def test_token_budget_batches_give_the_same_vectors_with_less_padding(embedder, mixed_inputs, forward_masks):
    never = ReasoningBudget(mode="never")
    corpus = [
        *[f"query {n}: what is {n} plus {n + 5}?" for n in range(7)],
        {"text": PAGE_40K[:1500], "image": make_sample_image((90, 120), seed=7)},
        {"text": PAGE_40K[:3000]},
        *mixed_inputs,
    ]
    single = [embedder.encode([x], budget=never)[0].vector for x in corpus]
    forward_masks.clear()
    by_count = embedder.encode(corpus, budget=never, batch_size=8, max_batch_tokens=None)
    count_masks = list(forward_masks)
    forward_masks.clear()
    max_batch_tokens = 1500
    by_tokens = embedder.encode(corpus, budget=never, batch_size=8, max_batch_tokens=max_batch_tokens)
    token_masks = list(forward_masks)
    for a, b, one in zip(by_count, by_tokens, single):
        np.testing.assert_allclose(a.vector, one, atol=1e-4)
        np.testing.assert_allclose(b.vector, one, atol=1e-4)
    assert _padded_positions(token_masks) * 10 < _padded_positions(count_masks)
    assert sum(int(m.sum()) for m in token_masks) == sum(int(m.sum()) for m in count_masks)  # same real tokens
    assert all(mask.shape[0] <= 8 for mask in token_masks)
    over = [mask for mask in token_masks if mask.numel() > max_batch_tokens]
    assert over and all(mask.shape[0] == 1 for mask in over)  # only an input that alone is over goes over


def test_batches_leave_room_for_thoughts_when_the_budget_may_think(embedder, mixed_inputs):
    items = embedder.prepare(mixed_inputs * 2)
    instructions, _ = embedder.prompts(items, "query")
    lengths = embedder.processor.embedding_row_lengths(items, instructions)
    always = ReasoningBudget(mode="always", max_thought_tokens=12)
    max_batch_tokens = 4 * max(lengths)
    plans = {}
    for budget, room in ((ReasoningBudget(mode="never"), 0), (always, 12)):
        plans[room] = embedder.plan_batches(items, "query", budget, 8, max_batch_tokens)
        assert sorted(i for batch in plans[room] for i in batch) == list(range(len(items)))
        assert all(len(b) * (max(lengths[i] for i in b) + room) <= max_batch_tokens for b in plans[room])
    # The room mattered: without it a batch would leave none for the thoughts.
    assert any(len(b) * (max(lengths[i] for i in b) + 12) > max_batch_tokens for b in plans[0])


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"max_input_tokens": 0}, "max_input_tokens"),
        ({"max_input_tokens": "all"}, "max_input_tokens"),
        ({"max_batch_tokens": 0}, "max_batch_tokens"),
    ],
)
def test_bad_limits_are_named_before_any_work(embedder, calls, limits, message):
    with pytest.raises(ValueError, match=message):
        embedder.encode(["fine"], **limits)
    assert calls["forward"] == 0
