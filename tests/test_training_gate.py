import json

import numpy as np
import pytest
import torch

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.training.data import document_corpus, load_examples
from twn_rag.training.gate import (
    GATE_METRICS_FILENAME,
    GateArguments,
    GateData,
    binary_metrics,
    calibration_folds,
    collect_gate_data,
    holdout_split,
    margins,
    net_gain_threshold,
    roc_auc,
    role_holdout_split,
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


def gate_arguments(tmp_path, delta, **options):
    """A short gate fit on the toy labels, a quarter of them held out."""
    return GateArguments(
        output_dir=tmp_path / "gate",
        epochs=60,
        batch_size=8,
        learning_rate=1e-2,
        delta=delta,
        holdout_fraction=0.25,
        max_thought_tokens=4,
        show_progress=False,
        **options,
    )


def test_gate_trains_reports_and_calibrates(tiny_ckpt, toy, gate_data, tmp_path, caplog):
    gains = (gate_data.margin_think - gate_data.margin_nothink).sort().values
    delta = float(gains[len(gains) // 2 - 1])  # about half the queries are labelled 1
    args = gate_arguments(tmp_path, delta, target_think_rate=0.25)
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


@pytest.fixture(scope="module")
def both_roles(embedder, toy):
    return collect_gate_data(embedder, toy, roles=("query", "document"), batch_size=4, max_thought_tokens=4)


def test_documents_are_labelled_by_the_margins_of_the_queries_they_answer(embedder, toy, gate_data, both_roles):
    """Recompute each document's two margins through the public encode path."""
    documents, positives, _ = document_corpus(toy)
    labelled = list(range(len(documents)))  # every document, hard negatives only too
    assert set(positives) != set(labelled)
    assert both_roles.roles == ["query"] * len(toy) + ["document"] * len(labelled)
    assert both_roles.rows("document") == list(range(len(toy), len(toy) + len(labelled)))
    queries = both_roles.rows("query")  # the query rows are the query-only collection's
    torch.testing.assert_close(both_roles.margin_think[queries], gate_data.margin_think)
    never, always = ReasoningBudget(mode="never"), ReasoningBudget(mode="always", max_thought_tokens=4)
    docs = np.stack([r.vector for r in embedder.encode(documents, role="document", budget=never)])
    plain = np.stack([r.vector for r in embedder.encode([e.query for e in toy], budget=never)])
    with_thought = np.stack([r.vector for r in embedder.encode([e.query for e in toy], budget=always)])
    # each query as it retrieves better: with its thought where that raises its margin
    better = margins(with_thought, docs, positives) > margins(plain, docs, positives)
    assert 0 < better.sum() < len(toy)  # both kinds occur, so the choice is tested
    plain = np.where(better[:, None], with_thought, plain)
    thought = embedder.encode([documents[d] for d in labelled], role="document", budget=always)
    for row, (d, result) in zip(both_roles.rows("document"), zip(labelled, thought)):
        answered = [i for i, p in enumerate(positives) if p == d]
        assert int(both_roles.thought_tokens[row]) == result.thought_tokens
        if not answered:  # nobody's positive: no query gains, label 0
            assert float(both_roles.margin_think[row]) == float(both_roles.margin_nothink[row]) == 0.0
            continue
        replaced = docs.copy()
        replaced[d] = result.vector
        expected_think = margins(plain[answered], replaced, [d] * len(answered)).mean()
        expected_plain = margins(plain[answered], docs, [d] * len(answered)).mean()
        assert float(both_roles.margin_think[row]) == pytest.approx(expected_think, abs=1e-4)
        assert float(both_roles.margin_nothink[row]) == pytest.approx(expected_plain, abs=1e-4)
    assert both_roles.features.shape == (len(toy) + len(labelled), embedder.dimension)


def test_gate_data_round_trips_with_roles_and_reads_query_only_files(both_roles, gate_data, tmp_path):
    both_roles.save(tmp_path / "both.pt")
    loaded = GateData.load(tmp_path / "both.pt")
    assert loaded.roles == both_roles.roles
    torch.testing.assert_close(loaded.margin_think, both_roles.margin_think)
    # a file written before document labels (no roles) holds queries only
    state = {k: getattr(gate_data, k) for k in ("features", "margin_nothink", "margin_think", "thought_tokens")}
    torch.save({**state, "meta": json.dumps(gate_data.meta)}, tmp_path / "old.pt")
    assert GateData.load(tmp_path / "old.pt").roles == ["query"] * len(gate_data.features)


def test_role_holdout_keeps_rows_of_every_role():
    roles = ["query"] * 8 + ["document"] * 4
    train, held = role_holdout_split(roles, 0.25, seed=0)
    assert sorted(train + held) == list(range(12))
    assert [roles[i] for i in held].count("query") == 2 and [roles[i] for i in held].count("document") == 1
    assert role_holdout_split(["query"] * 10, 0.2, seed=1) == holdout_split(10, 0.2, seed=1)


def test_gate_learns_both_roles_and_reports_each(tiny_ckpt, toy, both_roles, tmp_path):
    gains = (both_roles.margin_think - both_roles.margin_nothink).sort().values
    # halfway between the two middle gains: float noise between two label runs cannot flip one
    delta = float(gains[len(gains) // 2 - 1 : len(gains) // 2 + 1].mean())
    args = gate_arguments(tmp_path, delta, roles=("query", "document"))
    report = json.loads((train_gate(toy, tiny_ckpt, args) / GATE_METRICS_FILENAME).read_text())
    labels = both_roles.labels(delta)
    assert report["labelled_queries"] == len(toy) and report["labelled_documents"] == len(both_roles.rows("document"))
    for role in ("query", "document"):
        part = report["roles"][role]
        assert part["positive_labels"] == int(labels[both_roles.rows(role)].sum())
        assert part["heldout"]["count"] >= 1
        assert part["train"]["count"] + part["heldout"]["count"] == len(both_roles.rows(role))
    assert report["train"]["count"] + report["heldout"]["count"] == len(labels)


def test_gate_roles_are_checked():
    with pytest.raises(ValueError, match="roles must be"):
        GateArguments(roles=("queries",))
    with pytest.raises(ValueError, match="roles must be"):
        GateArguments(roles=())


def test_soft_targets_keep_the_size_of_the_gain(gate_data):
    delta = float(gate_data.gains().median())
    hard = gate_data.labels(delta)
    soft = gate_data.targets(delta, temperature=0.1)
    assert torch.equal(gate_data.targets(delta), hard)
    assert torch.equal((soft > 0.5).float(), hard)  # the same side of delta as the hard label
    order = gate_data.gains().argsort()
    assert torch.all(soft[order].diff() >= 0)  # a larger gain, a larger target
    assert torch.all((soft > 0) & (soft < 1))
    with pytest.raises(ValueError, match="label_temperature"):
        GateArguments(label_temperature=0.0)


def test_gate_trains_on_soft_targets(tiny_ckpt, toy, gate_data, tmp_path):
    gains = gate_data.gains().sort().values
    delta = float(gains[len(gains) // 2 - 1])
    out = train_gate(toy, tiny_ckpt, gate_arguments(tmp_path, delta, label_temperature=0.05))
    report = json.loads((out / GATE_METRICS_FILENAME).read_text())
    assert report["label_temperature"] == 0.05
    assert report["positive_labels"] == int(gate_data.labels(delta).sum())  # metrics use the hard labels
    assert report["train"]["auc"] == 1.0
    losses = [r["loss"] for r in LossLog(out / "gate_log.jsonl").read()]
    assert losses[-1] < losses[0]


def test_net_gain_threshold_thinks_where_the_held_out_gains_add_up_most():
    scores = [0.9, 0.7, 0.42, 0.3, 0.1]
    gains = [1.0, 0.5, 0.8, -0.9, -0.5]  # the row at 0.3 loses by thinking, the one at 0.42 gains
    threshold, net = net_gain_threshold(scores, gains)
    assert net[0.35] == net[0.4] == pytest.approx(2.3) == max(net.values())
    assert net[0.3] == pytest.approx(1.4) and net[0.05] == pytest.approx(0.9) and net[0.95] == 0.0
    assert threshold == 0.4  # of the tied 0.35 and 0.4, the one nearer 0.5
    assert net_gain_threshold(scores, [0.0] * 5)[0] == 0.5  # nothing to gain: the default
    assert net_gain_threshold([0.2, 0.8], [-1.0, -1.0])[0] == 0.85  # nobody should think


def test_calibration_folds_deal_each_role_over_every_fold():
    roles = ["query"] * 7 + ["document"] * 5
    fold_of = calibration_folds(roles, 3, seed=0)
    for role, count in (("query", 7), ("document", 5)):
        folds = [f for f, r in zip(fold_of, roles) if r == role]
        sizes = [folds.count(k) for k in range(3)]
        assert sum(sizes) == count and max(sizes) - min(sizes) <= 1
    assert calibration_folds(roles, 3, seed=0) == fold_of
    assert any(calibration_folds(roles, 3, seed=s) != fold_of for s in range(1, 5))


def test_cross_fitted_threshold_is_saved_and_leaves_the_gate_as_trained(tiny_ckpt, toy, both_roles, tmp_path):
    gains = both_roles.gains().sort().values
    delta = float(gains[len(gains) // 2 - 1 : len(gains) // 2 + 1].mean())
    plain = train_gate(toy, tiny_ckpt, gate_arguments(tmp_path / "plain", delta, roles=("query", "document")))
    args = gate_arguments(
        tmp_path / "crossfit", delta, roles=("query", "document"), calibration_folds=2, calibration_repeats=2
    )
    out = train_gate(toy, tiny_ckpt, args)
    report = json.loads((out / GATE_METRICS_FILENAME).read_text())
    calibration = report["calibration"]
    assert (calibration["folds"], calibration["repeats"]) == (2, 2)
    net = {float(t): g for t, g in calibration["net_gain"].items()}
    assert len(net) == 19 and net[report["threshold"]] == max(net.values())
    # the held-out scores cover every training row of each role once
    for role in ("query", "document"):
        assert calibration["heldout"][role]["count"] == report["roles"][role]["train"]["count"]
    trained = TWNEmbedder.from_pretrained(out, device="cpu", dtype="float32")
    assert trained.config.gate_threshold == {"query": report["threshold"], "document": 0.5} == report["thresholds"]
    # the fold fits are scratch work: the saved gate is the one fitted on every training row
    queries = [e.query for e in toy]
    never = ReasoningBudget(mode="never")
    crossfit_scores = [r.gate_score for r in trained.encode(queries, budget=never)]
    reference = TWNEmbedder.from_pretrained(plain, device="cpu", dtype="float32")
    assert crossfit_scores == pytest.approx([r.gate_score for r in reference.encode(queries, budget=never)])
    assert not list(out.glob("*fold*"))


def test_cross_fitted_calibration_options_are_checked():
    with pytest.raises(ValueError, match="calibration_folds must be >= 2"):
        GateArguments(calibration_folds=1)
    with pytest.raises(ValueError, match="not both"):
        GateArguments(calibration_folds=3, target_think_rate=0.2)
    with pytest.raises(ValueError, match="calibration_repeats"):
        GateArguments(calibration_repeats=0)
