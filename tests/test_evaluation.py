import json

import numpy as np
import pytest

from twn_rag import ReasoningBudget
from twn_rag.evaluation import evaluate, positive_ranks, retrieval_metrics
from twn_rag.training.data import document_corpus, load_examples
from twn_rag.training.synthetic import write_toy_dataset


def test_ranks_and_metrics_by_hand():
    documents = np.eye(4, dtype=np.float32)
    queries = np.array([[0.9, 0.1, 0, 0], [0.5, 0.4, 0.3, 0.0], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    ranks = positive_ranks(queries, documents, [0, 2, 0])
    assert ranks.tolist() == [1, 3, 4]
    assert positive_ranks(queries, documents, [0, 2, 0], candidates=[[1], [3], [2]]).tolist() == [1, 1, 2]
    metrics = retrieval_metrics(np.array([1, 3, 12]))
    assert metrics["recall_at_1"] == pytest.approx(1 / 3)
    assert metrics["recall_at_5"] == pytest.approx(2 / 3) and metrics["recall_at_10"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)
    assert metrics["ndcg_at_10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))


def test_three_modes_side_by_side(embedder, toy):
    report = evaluate(embedder, toy, think_ratio=0.25, batch_size=4)
    assert list(report.modes) == ["never", "always", "adaptive"]
    assert (report.queries, report.documents) == (8, 16)
    never, always, adaptive = report.modes.values()
    assert never.think_rate == 0 and never.mean_thought_tokens == 0
    assert always.think_rate == 1 and always.mean_thought_tokens > 0
    assert adaptive.query_think_rate == 2 / 8 and adaptive.document_think_rate == 4 / 16
    assert 0 < adaptive.mean_thought_tokens < always.mean_thought_tokens
    assert all(r.wall_time_s > 0 for r in report.modes.values())
    # the never-mode numbers match a direct computation through encode
    examples = load_examples(toy)
    documents, positives, _ = document_corpus(examples)
    budget = ReasoningBudget(mode="never")
    queries = np.stack([r.vector for r in embedder.encode([e.query for e in examples], budget=budget)])
    docs = np.stack([r.vector for r in embedder.encode(documents, role="document", budget=budget)])
    expected = retrieval_metrics(positive_ranks(queries, docs, positives))
    assert never.mrr == pytest.approx(expected["mrr"]) and never.recall_at_1 == pytest.approx(expected["recall_at_1"])
    table = report.table().splitlines()
    assert table[0].split()[:3] == ["mode", "R@1", "R@5"] and len(table) == 5
    assert set(report.to_dict()["modes"]["adaptive"]) >= {"recall_at_10", "ndcg_at_10", "think_rate", "wall_time_s"}


def test_own_candidates_rank_against_a_queries_own_negatives(embedder, toy):
    corpus = evaluate(embedder, toy, ["never"]).modes["never"]
    own = evaluate(embedder, toy, ["never"], candidates="own")
    assert own.candidates == "own"
    # one hard negative each: the positive is first or second, never lower
    assert own.modes["never"].recall_at_5 == 1.0 and own.modes["never"].mrr >= corpus.mrr
    with pytest.raises(ValueError, match="candidates"):
        evaluate(embedder, toy, ["never"], candidates="some")


def test_adaptive_without_ratio_uses_the_checkpoint_threshold(embedder, toy):
    report = evaluate(embedder, toy, ["adaptive"], batch_size=8)
    assert list(report.modes) == ["adaptive"]
    assert report.modes["adaptive"].query_threshold == embedder.config.threshold("query")
    with pytest.raises(ValueError, match="modes"):
        evaluate(embedder, toy, ["sometimes"])


def test_eval_command_passes_its_options(tiny_ckpt, toy, tmp_path):
    from typer.testing import CliRunner

    from twn_rag.cli import app

    report_path = tmp_path / "r.json"
    args = ["eval", "--data", str(toy), "--model", str(tiny_ckpt), "--mode", "never", "--mode", "adaptive"]
    args += ["--candidates", "own", "--think-ratio", "0.5", "--dtype", "fp32", "--json", str(report_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["candidates"] == "own" and list(report["modes"]) == ["never", "adaptive"]
    assert report["modes"]["never"]["recall_at_5"] == 1.0  # two candidates per query
    assert report["modes"]["adaptive"]["query_think_rate"] == 0.5
    bad = CliRunner().invoke(app, ["eval", "--data", str(toy), "--model", str(tiny_ckpt), "--mode", "sometimes"])
    assert bad.exit_code == 2 and "modes must be among" in bad.output


def test_think_roles_and_a_given_threshold(embedder, toy):
    report = evaluate(embedder, toy, ["always", "adaptive"], think_roles=["query"], threshold=0.0)
    always, adaptive = report.modes["always"], report.modes["adaptive"]
    assert always.query_think_rate == 1 and always.document_think_rate == 0
    assert always.query_mean_thought_tokens == pytest.approx(always.mean_thought_tokens * 24 / 8)
    assert adaptive.query_threshold == 0.0 and adaptive.document_threshold is None
    assert adaptive.query_think_rate == 1  # every gate score is >= 0
    never = evaluate(embedder, toy, ["never"]).modes["never"]
    # documents never thought in either run, so the queries alone decide the difference
    assert always.query_mean_thought_tokens > 0 and never.query_mean_thought_tokens == 0
    with pytest.raises(ValueError, match="not both"):
        evaluate(embedder, toy, ["adaptive"], think_ratio=0.5, threshold=0.5)
    with pytest.raises(ValueError, match="think_roles"):
        evaluate(embedder, toy, ["never"], think_roles=["passage"])


def test_eval_command_think_role_and_threshold(tiny_ckpt, toy, tmp_path):
    from typer.testing import CliRunner

    from twn_rag.cli import app

    report_path = tmp_path / "r.json"
    args = ["eval", "--data", str(toy), "--model", str(tiny_ckpt), "--mode", "adaptive", "--think-role", "query"]
    args += ["--threshold", "1.0", "--dtype", "fp32", "--json", str(report_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    adaptive = json.loads(report_path.read_text())["modes"]["adaptive"]
    assert adaptive["query_threshold"] == 1.0 and adaptive["document_think_rate"] == 0
