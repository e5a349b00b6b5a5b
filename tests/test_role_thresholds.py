"""A gate threshold per role (``TWNConfig.gate_threshold`` as ``{"query": ..., "document": ...}``,
as a cross-fitted gate stage writes it) holds on every route that takes the checkpoint's budget."""

import json
import shutil

import numpy as np
import pytest
from langchain_twn import TWNEmbeddings
from llama_index.embeddings.twn import TWNEmbedding

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.config import CONFIG_FILENAME, TWNConfig
from twn_rag.evaluation import evaluate
from twn_rag.index import TWNIndex
from twn_rag.training.data import document_corpus, load_examples
from twn_rag.training.synthetic import write_toy_dataset


def test_a_threshold_per_role_is_read_filled_and_checked():
    config = TWNConfig(gate_threshold={"query": 0.3})
    assert (config.threshold("query"), config.threshold("document")) == (0.3, 0.5)
    assert TWNConfig.from_dict(config.to_dict()).gate_threshold == {"query": 0.3, "document": 0.5}
    assert TWNConfig(gate_threshold=0.4).threshold("document") == 0.4  # one number: both roles
    with pytest.raises(ValueError, match="unknown roles"):
        TWNConfig(gate_threshold={"queries": 0.3})
    with pytest.raises(ValueError, match="for documents must be within 0..1"):
        TWNConfig(gate_threshold={"document": 1.5})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return load_examples(write_toy_dataset(tmp_path_factory.mktemp("toy")))


@pytest.fixture(scope="module")
def split_thresholds(embedder, toy):
    """A threshold per role, each in the middle of that role's gate scores on the toy data (so
    each role's adaptive budget thinks on some inputs and not others)."""
    never = ReasoningBudget(mode="never")
    documents, _, _ = document_corpus(toy)
    query_scores = [r.gate_score for r in embedder.encode([e.query for e in toy], role="query", budget=never)]
    document_scores = [r.gate_score for r in embedder.encode(documents, role="document", budget=never)]
    return {"query": float(np.median(query_scores)), "document": float(np.quantile(document_scores, 0.75))}


@pytest.fixture(scope="module")
def per_role(tiny_ckpt, split_thresholds, tmp_path_factory):
    """The tiny TWN with ``split_thresholds`` in its ``twn_config.json``."""
    root = tmp_path_factory.mktemp("per-role")
    shutil.copytree(tiny_ckpt.parent, root, dirs_exist_ok=True)  # the checkpoint and the backbone beside it
    checkpoint = root / tiny_ckpt.name
    config_path = checkpoint / CONFIG_FILENAME
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "gate_threshold": split_thresholds}))
    return TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")


def test_each_role_thinks_at_its_own_threshold_when_no_budget_is_given(per_role, toy, split_thresholds):
    documents, _, _ = document_corpus(toy)
    for role, inputs in (("query", [e.query for e in toy]), ("document", documents)):
        assert per_role.default_budget(role).threshold == split_thresholds[role]
        results = per_role.encode(inputs, role=role)
        assert [r.thought_used for r in results] == [r.gate_score >= split_thresholds[role] for r in results]
        assert 0 < sum(r.thought_used for r in results) < len(results)


def test_indexes_and_framework_embedders_take_each_roles_threshold(per_role, split_thresholds, tmp_path):
    index = TWNIndex.open(tmp_path / "idx", per_role)
    langchain = TWNEmbeddings(embedder=per_role)
    llama_index = TWNEmbedding(embedder=per_role)
    for role in ("query", "document"):
        assert index.budget(role).threshold == split_thresholds[role]
        assert getattr(langchain, f"{role}_budget").threshold == split_thresholds[role]
        assert getattr(llama_index, f"{role}_budget").threshold == split_thresholds[role]
    assert TWNIndex.open(tmp_path / "idx").budget("document").threshold == split_thresholds["document"]


def test_evaluation_in_adaptive_mode_uses_each_roles_threshold(per_role, toy, split_thresholds):
    report = evaluate(per_role, toy, ["adaptive"], batch_size=8)
    adaptive = report.modes["adaptive"]
    assert (adaptive.query_threshold, adaptive.document_threshold) == (
        split_thresholds["query"],
        split_thresholds["document"],
    )
