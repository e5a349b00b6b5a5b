"""``langchain_twn.TWNEmbeddings`` on its own, against the offline tiny TWN: roles, budgets and
their ledgers, images, errors, async and progress."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_twn import TWNEmbeddings
from pydantic import ValidationError

from twn_rag import InvalidInputError, ReasoningBudget
from twn_rag.result_metadata import GATE_SCORE_KEY, THOUGHT_KEY, THOUGHT_TOKENS_KEY
from twn_rag.testing.integrations import always, never, with_loop_ticks


def test_roles_and_python_floats(embedder, document_texts):
    model = TWNEmbeddings(embedder=embedder, query_budget=never(), document_budget=never(), batch_size=2)
    documents = model.embed_documents(document_texts)
    query = model.embed_query(document_texts[0])
    assert all(type(x) is float for x in query) and all(type(x) is float for x in documents[0])
    np.testing.assert_allclose(
        documents, [r.vector for r in embedder.encode(document_texts, role="document", budget=never())], atol=1e-5
    )
    np.testing.assert_allclose(
        query, embedder.encode(document_texts[:1], role="query", budget=never())[0].vector, atol=1e-5
    )
    assert not np.allclose(query, documents[0], atol=1e-3)


def test_budgets_persist_their_ledgers_per_role(embedder, document_texts):
    query_budget, document_budget = always(3), ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3)
    model = TWNEmbeddings(embedder=embedder, query_budget=query_budget, document_budget=document_budget)
    assert model.query_budget is query_budget and model.document_budget is document_budget
    model.embed_documents(document_texts[:2])
    model.embed_documents(document_texts[2:])
    model.embed_query("a question")
    assert document_budget.ledger.items_seen == 5 and document_budget.ledger.items_thought == 2
    assert query_budget.ledger.items_seen == 1 and query_budget.ledger.items_thought == 1
    unset = TWNEmbeddings(embedder=embedder)
    assert unset.document_budget == embedder.default_budget("document")


def test_last_results_hold_the_thoughts_of_the_last_documents(embedder, document_texts):
    model = TWNEmbeddings(embedder=embedder, document_budget=always(4))
    assert model.last_results == []
    vectors = model.embed_documents(document_texts[:3])
    results = model.last_results
    assert len(results) == 3
    np.testing.assert_allclose([r.vector for r in results], vectors, atol=0)
    assert all(isinstance(r.thought, str) and 0 < r.thought_tokens <= 4 and 0 <= r.gate_score <= 1 for r in results)
    model.embed_query("a query does not replace them")
    assert len(model.last_results) == 3
    metadata = model.last_metadata
    assert [m[THOUGHT_KEY] for m in metadata] == [r.thought for r in results]
    assert all(isinstance(m[GATE_SCORE_KEY], float) and isinstance(m[THOUGHT_TOKENS_KEY], int) for m in metadata)


def test_embed_image_positional_or_keyword(embedder, image_files):
    model = TWNEmbeddings(embedder=embedder, document_budget=never())
    uris = [str(p) for p in image_files]
    positional = model.embed_image(uris)
    keyword = model.embed_image(uris=uris)
    assert type(positional[0][0]) is float and len(model.last_results) == 3
    np.testing.assert_allclose(positional, keyword, atol=0)
    expected = embedder.encode([{"image": u} for u in uris], role="document", budget=never())
    np.testing.assert_allclose(positional, [r.vector for r in expected], atol=1e-5)


def test_bad_inputs_raise_errors_that_name_them(embedder, tmp_path, image_files):
    model = TWNEmbeddings(embedder=embedder)
    with pytest.raises(InvalidInputError, match=r"input 1 \(image .*nowhere.png\): image file not found"):
        model.embed_image([str(image_files[0]), str(tmp_path / "nowhere.png")])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("plain text")
    with pytest.raises(InvalidInputError, match="notes.png.*cannot read image"):
        model.embed_image([str(not_an_image)])
    with pytest.raises(InvalidInputError, match=r"input 1 \('   '\): empty input"):
        model.embed_documents(["fine", "   "])


def test_unknown_options_fail_at_construction(embedder, tiny_ckpt):
    with pytest.raises(ValidationError, match="embed_batch_size"):
        TWNEmbeddings(embedder=embedder, embed_batch_size=4)  # LlamaIndex's name, not LangChain's
    with pytest.raises(ValidationError, match="batch_size"):
        TWNEmbeddings(model_name=str(tiny_ckpt), batch_size=0)


async def test_async_forms_match_and_leave_the_loop_free(embedder, document_texts):
    model = TWNEmbeddings(embedder=embedder, query_budget=never(), document_budget=never())

    async def both():
        return await model.aembed_documents(document_texts), await model.aembed_query("a query")

    (documents, query), ticks = await with_loop_ticks(both())
    assert ticks > 10
    np.testing.assert_allclose(documents, model.embed_documents(document_texts), atol=1e-5)
    np.testing.assert_allclose(query, model.embed_query("a query"), atol=1e-5)


def test_show_progress_shows_a_bar(embedder, capsys, document_texts):
    TWNEmbeddings(embedder=embedder, document_budget=never(), show_progress=True).embed_documents(document_texts)
    assert "twn encode" in capsys.readouterr().err
    TWNEmbeddings(embedder=embedder, document_budget=never()).embed_documents(document_texts)
    assert "twn encode" not in capsys.readouterr().err
