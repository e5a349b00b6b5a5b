"""``TWNIndex.add`` allocates the document budget over the whole index (pass 1 embeds without
thinking, pass 2 selects, pass 3 thinks): the thinkers depend neither on file order nor batch
size, incremental adds spend what is left, and a kill -9 in any pass resumes exactly."""

from __future__ import annotations

import json
import random

import pytest
from support.allocation import (
    ITEMS,
    RATIO,
    TOKENS,
    assert_same_index,
    budget,
    expected_thinkers,
    run_killed_writer,
    state_of,
)

from twn_rag import ReasoningBudget
from twn_rag.index import TWNIndex
from twn_rag.index.budget_store import PENDING_KEY


def test_the_thinkers_are_the_best_gate_scores_of_the_index(reference):
    state, expected = reference
    assert state.thinkers == expected and state.final
    assert state.ledger == (ITEMS, len(expected), state.record_tokens)
    assert 0 < state.record_tokens <= TOKENS * len(expected)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_file_order_and_batch_size_do_not_change_who_thinks(tmp_path, embedder, corpus, reference, batch_size):
    _, files = corpus
    shuffled = random.Random(batch_size).sample(files, len(files))
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=budget())
    index.add(shuffled, batch_size=batch_size, chunk_size=2)
    assert_same_index(state_of(index), reference[0])


def test_an_incremental_add_spends_what_the_ratio_leaves_on_its_new_items(tmp_path, embedder, corpus):
    _, files = corpus
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=budget())
    index.add(files[:1])  # 3 items: floor(0.4 * 3) = 1 thinks
    first = state_of(index)
    assert len(first.thinkers) == 1
    report = index.add(files[1:])  # 12 items in all: floor(0.4 * 12) - 1 = 3 more, all new ones
    after = state_of(index)
    assert report.items_thought == 3 and len(after.thinkers) == 4 and first.thinkers <= after.thinkers
    new_ids = after.ids - first.ids
    assert after.thinkers - first.thinkers == expected_thinkers(embedder, files[1:], index.manifest.loader, 3 / 9)
    assert (after.thinkers - first.thinkers) <= new_ids


def test_the_token_budget_caps_the_global_selection(tmp_path, embedder, corpus):
    folder, _ = corpus
    index = TWNIndex.open(
        tmp_path / "index", embedder, document_budget=budget(max_think_ratio=None, token_budget=2 * TOKENS + 1)
    )
    index.add([folder], batch_size=3)
    state = state_of(index)
    assert state.ledger[2] <= 2 * TOKENS + 1 and state.ledger[2] == state.record_tokens
    # Thoughts shorter than their reservation leave room: rounds go on while one more fits.
    assert len(state.thinkers) >= 2 and 2 * TOKENS + 1 - state.ledger[2] < TOKENS


@pytest.mark.parametrize(
    ("method", "nth"),
    [
        ("_flush", 3),  # pass 1: two files' records stored, the rest not
        ("_allocate", 1),  # after pass 3 (its records stored and counted), before the run ended
        ("_store_thoughts", 1),  # pass 3: the first thinkers stored, the others not
        ("_finalize", 1),  # pass 3: thoughts written into records, not counted yet (recovered next run)
    ],
)
def test_a_writer_killed_in_any_pass_resumes_to_the_same_index(
    tmp_path, tiny_ckpt, embedder, corpus, reference, method, nth
):
    folder, _ = corpus
    limits = {"threshold": 0.0, "max_think_ratio": RATIO, "max_thought_tokens": TOKENS}
    run_killed_writer(tiny_ckpt, tmp_path / "index", folder, method, nth, limits)
    index = TWNIndex.open(tmp_path / "index", embedder)
    killed = state_of(index)
    assert killed.ledger[0] == len(killed.ids)  # what was stored is counted, once
    assert len(killed.thinkers) <= 4
    if method == "_flush":  # records awaiting the selection are searchable, with no-think vectors
        assert not killed.final and len(index.search("page 2 about topic", k=3)) == 3
    index.add([folder])
    state = state_of(index)
    assert_same_index(state, reference[0])
    assert state.ledger[:2] == (ITEMS, 4) and state.ledger[2] >= state.record_tokens
    assert json.loads(index.budgets.metadata().get(PENDING_KEY, "{}")) == {}


def test_never_and_always_modes(tmp_path, embedder, corpus):
    folder, _ = corpus
    never = TWNIndex.open(tmp_path / "never", embedder, document_budget=ReasoningBudget(mode="never"))
    never.add([folder])
    assert state_of(never).thinkers == set() and state_of(never).final
    every = TWNIndex.open(
        tmp_path / "always", embedder, document_budget=ReasoningBudget(mode="always", max_thought_tokens=2)
    )
    every.add([folder])
    assert len(state_of(every).thinkers) == ITEMS and state_of(every).final


def test_a_run_with_nothing_to_embed_or_think_loads_no_model(tmp_path, embedder, corpus):
    folder, _ = corpus
    TWNIndex.open(tmp_path / "index", embedder, document_budget=budget()).add([folder])
    reopened = TWNIndex.open(tmp_path / "index")  # the model would be loaded on first use
    report = reopened.add([folder])
    assert report.files_unchanged == 4 and report.items_thought == 0
    assert reopened._embedder is None
