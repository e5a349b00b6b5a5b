"""The options every ``twn-rag train`` stage shares, declared once in ``TrainOptions``."""

import dataclasses
from pathlib import Path

import pytest
import typer

from twn_rag.cli import app
from twn_rag.cli.train_commands import TrainOptions
from twn_rag.training.gate import GateArguments
from twn_rag.training.rl import RLArguments
from twn_rag.training.sft import SFTArguments

SHARED = [field.name for field in dataclasses.fields(TrainOptions)]


def _options_of(stage: str) -> list[str]:
    train = typer.main.get_command(app).commands["train"]
    return [param.name for param in train.commands[stage].params]


@pytest.mark.parametrize(
    ("stage", "own"),
    [
        ("sft", ["temperature", "reasoning_weight", "embedding_weight", "num_queries", "lora_rank", "lora_alpha"]),
        (
            "gate",
            [
                "delta",
                "holdout",
                "target_think_rate",
                "calibration_folds",
                "calibration_repeats",
                "max_thought_tokens",
                "embed_batch_size",
            ],
        ),
        ("rl", ["group_size", "max_thought_tokens", "sampling_temperature", "top_p", "top_k", "kl_coef"]),
    ],
)
def test_each_stage_takes_the_shared_options_then_its_own(stage, own):
    options = _options_of(stage)
    shared = [name for name in SHARED if not (stage == "gate" and name == "gradient_checkpointing")]
    assert options[: len(shared)] == shared
    assert set(own) <= set(options[len(shared) :])


def test_shared_options_become_the_stage_arguments(tmp_path):
    options = TrainOptions(data=Path("d.jsonl"), base="b", out=tmp_path, steps=7, lr=0.5, progress=False)
    sft = options.arguments(SFTArguments, temperature=0.1)
    assert (sft.output_dir, sft.max_steps, sft.learning_rate, sft.show_progress) == (tmp_path, 7, 0.5, False)
    assert sft.temperature == 0.1
    # Options left at None keep each stage's own default.
    assert options.arguments(GateArguments).batch_size == GateArguments.batch_size
    assert options.arguments(RLArguments).batch_size == RLArguments.batch_size != GateArguments.batch_size
