import json

import numpy as np
import pytest
import torch

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.training.data import document_corpus, load_examples
from twn_rag.training.gate import (
    GATE_METRICS_FILENAME,
    GateArguments,
    binary_metrics,
    collect_gate_data,
    holdout_split,
    margins,
    roc_auc,
    train_gate,
)
from twn_rag.training.loss_log import LossLog
from twn_rag.training.synthetic import write_toy_dataset


def test_margin_is_positive_minus_best_other_document():
    documents = np.eye(3, dtype=np.float32)
    queries = np.array([[0.9, 0.3, 0.1], [0.2, 0.1, 0.7]], dtype=np.float32)
    np.testing.assert_allclose(margins(queries, documents, [0, 1]), [0.9 - 0.3, 0.1 - 0.7], rtol=1e-6)
    np.testing.assert_allclose(margins(queries[:1], documents[:1], [0]), [0.9], rtol=1e-6)  # nothing else


def test_auc_and_threshold_metrics():
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    assert roc_auc([0.3, 0.4], [1, 1]) is None
    metrics = binary_metrics([0.9, 0.6, 0.4, 0.2], [1, 0, 1, 0], threshold=0.5)
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5 and metrics["think_rate"] == 0.5
    assert metrics["auc"] == 0.75
    assert binary_metrics([0.1, 0.2], [1, 0], threshold=0.5)["precision"] is None


def test_holdout_split_is_deterministic_and_disjoint():
    train, held = holdout_split(10, 0.2, seed=1)
    assert len(held) == 2 and sorted(train + held) == list(range(10))
    assert holdout_split(10, 0.2, seed=1) == (train, held)
    assert holdout_split(5, 0.0, seed=1) == ([0, 1, 2, 3, 4], [])
    assert len(holdout_split(2, 0.9, seed=0)[0]) == 1  # one always stays for training


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return load_examples(write_toy_dataset(tmp_path_factory.mktemp("toy")))


@pytest.fixture(scope="module")
def gate_data(embedder, toy):
    return collect_gate_data(embedder, toy, batch_size=4, max_thought_tokens=4)


def test_labels_compare_think_and_no_think_margins(embedder, toy, gate_data):
    """Recompute both margins through the public encode path and compare."""
    documents, positives, _ = document_corpus(toy)
    never, always = ReasoningBudget(mode="never"), ReasoningBudget(mode="always", max_thought_tokens=4)
    docs = np.stack([r.vector for r in embedder.encode(documents, role="document", budget=never)])
    plain = np.stack([r.vector for r in embedder.encode([e.query for e in toy], budget=never)])
    thought = embedder.encode([e.query for e in toy], budget=always)
    np.testing.assert_allclose(gate_data.margin_nothink, margins(plain, docs, positives), atol=1e-4)
    np.testing.assert_allclose(
        gate_data.margin_think, margins(np.stack([r.vector for r in thought]), docs, positives), atol=1e-4
    )
    gains = gate_data.margin_think - gate_data.margin_nothink
    assert torch.equal(gate_data.labels(0.0), (gains > 0).float())
    assert gate_data.labels(float(gains.max())).sum() == 0
    assert gate_data.features.shape == (len(toy), embedder.dimension)
    assert gate_data.thought_tokens.tolist() == [r.thought_tokens for r in thought]


def test_gate_trains_reports_and_calibrates(tiny_ckpt, toy, gate_data, tmp_path, caplog):
    gains = (gate_data.margin_think - gate_data.margin_nothink).sort().values
    delta = float(gains[len(gains) // 2 - 1])  # about half the queries are labelled 1
    args = GateArguments(
        output_dir=tmp_path / "gate",
        epochs=60,
        batch_size=8,
        learning_rate=1e-2,
        delta=delta,
        holdout_fraction=0.25,
        target_think_rate=0.25,
        max_thought_tokens=4,
        show_progress=False,
    )
    out = train_gate(toy, tiny_ckpt, args)
    report = json.loads((out / GATE_METRICS_FILENAME).read_text())
    assert report["positive_labels"] == int(gate_data.labels(delta).sum())
    assert report["heldout"]["count"] == 2 and report["train"]["count"] == 6
    for key in ("precision", "recall", "auc"):
        assert key in report["heldout"]
    # class-balanced BCE on 6 frozen feature rows: the gate separates its training labels
    assert report["train"]["auc"] == 1.0
    losses = [r["loss"] for r in LossLog(out / "gate_log.jsonl").read()]
    assert losses[-1] < losses[0] / 2
    trained = TWNEmbedder.from_pretrained(out, device="cpu", dtype="float32")
    assert trained.config.gate_threshold == pytest.approx(report["threshold"])
    scores = [r.gate_score for r in trained.encode([e.query for e in toy], budget=ReasoningBudget(mode="never"))]
    assert sum(s >= report["threshold"] for s in scores) == 2  # floor(0.25 * 8)
    adaptive = trained.encode([e.query for e in toy], budget=trained.default_budget())
    assert sum(r.thought_used for r in adaptive) == 2
    # the same command again: labels come from gate_data.pt and training is already complete
    with caplog.at_level("INFO", logger="twn_rag.training"):
        train_gate(toy, tiny_ckpt, args)
    assert "reusing gate labels" in caplog.text and "already reached step" in caplog.text
    assert json.loads((out / GATE_METRICS_FILENAME).read_text()) == report


def test_one_class_labels_are_refused(tiny_ckpt, toy, tmp_path):
    args = GateArguments(output_dir=tmp_path / "g", delta=10.0, max_thought_tokens=4, show_progress=False)
    with pytest.raises(ValueError, match="pick another --delta"):
        train_gate(toy, tiny_ckpt, args)
