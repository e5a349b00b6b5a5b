"""All three training stages and the evaluator through the command line, on the tiny model."""

import json

import numpy as np
from typer.testing import CliRunner

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.cli import app
from twn_rag.training.data import load_examples
from twn_rag.training.gate import collect_gate_data
from twn_rag.training.synthetic import write_toy_dataset

TINY = ["--num-queries", "4", "--lora-rank", "4", "--lora-alpha", "8", "--gate-hidden", "16"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_sft_gate_rl_eval_end_to_end(tiny_ckpt, sample_video, tmp_path):
    data = write_toy_dataset(tmp_path / "data")
    with data.open("a") as handle:  # one video example too, path relative to the file
        (tmp_path / "data" / "clip.mp4").write_bytes(sample_video.read_bytes())
        handle.write(json.dumps({"query": "a square moves", "positive": {"video": "clip.mp4", "text": "clip"}}))
    sft, gate, rl = tmp_path / "sft", tmp_path / "gate", tmp_path / "rl"
    common = ["--data", data, "--no-progress", "--batch-size", 3]

    invoke(
        "train",
        "sft",
        *common,
        "--base",
        tiny_ckpt / "backbone",
        "--out",
        sft,
        "--steps",
        6,
        "--lr",
        5e-3,
        "--save-every",
        3,
        *TINY,
    )
    assert (sft / "sft_log.jsonl").is_file() and (sft / "checkpoint-6").is_dir()

    # a delta at the median margin gain, so both labels occur whatever the tiny model thinks
    labelled = TWNEmbedder.from_pretrained(sft, device="cpu", dtype="float32")
    gains = collect_gate_data(labelled, load_examples(data), max_thought_tokens=4)
    delta = float(np.median((gains.margin_think - gains.margin_nothink).numpy()))
    invoke(
        "train",
        "gate",
        "--data",
        data,
        "--base",
        sft,
        "--out",
        gate,
        "--epochs",
        30,
        "--delta",
        delta,
        "--max-thought-tokens",
        4,
        "--target-think-rate",
        0.5,
        "--no-progress",
        "--log-format",
        "csv",
    )
    metrics = json.loads((gate / "gate_metrics.json").read_text())
    assert metrics["heldout"]["count"] == 2 and (gate / "gate_log.csv").is_file()

    invoke(
        "train",
        "rl",
        *common,
        "--base",
        gate,
        "--out",
        rl,
        "--steps",
        3,
        "--group-size",
        3,
        "--max-thought-tokens",
        4,
        "--lr",
        1e-3,
    )
    log = [json.loads(line) for line in (rl / "rl_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all("reward" in r and "kl" in r for r in log)

    report_path = tmp_path / "eval.json"
    output = invoke(
        "eval",
        "--data",
        data,
        "--model",
        rl,
        "--think-ratio",
        0.5,
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--json",
        report_path,
    )
    assert "never" in output and "adaptive" in output and "R@10" in output
    report = json.loads(report_path.read_text())
    assert list(report["modes"]) == ["never", "always", "adaptive"]
    assert report["queries"] == 9 and report["modes"]["always"]["think_rate"] == 1.0

    final = TWNEmbedder.from_pretrained(rl, device="cpu", dtype="float32")
    assert final.config.gate_threshold == metrics["threshold"]  # the gate stage's calibration survived RL
    results = final.encode(["seven plus five", {"video": str(sample_video)}], budget=ReasoningBudget(mode="always"))
    assert all(abs(np.linalg.norm(r.vector) - 1) < 1e-4 and r.thought is not None for r in results)


def test_bad_data_fails_with_file_and_line(tiny_ckpt, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"query": "q", "positive": "p"}\n{"query": "q"}\n')
    result = CliRunner().invoke(
        app, ["train", "gate", "--data", str(data), "--base", str(tiny_ckpt), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert f"{data}:2: missing 'positive'" in result.output
    data.write_text('{"query": "q", "positive": "p"}\n')
    result = CliRunner().invoke(
        app, ["train", "rl", "--data", str(data), "--base", str(tiny_ckpt / "backbone"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "not a TWN checkpoint" in result.output


def test_unknown_base_offline_says_what_to_do(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"query": "q", "positive": "p"}\n')
    result = CliRunner().invoke(
        app, ["train", "sft", "--data", str(data), "--base", "someone/not-cached", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "pass the local folder" in result.output
