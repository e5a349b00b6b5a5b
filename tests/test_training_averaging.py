import pytest
import torch
from safetensors.torch import load_file

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.modeling import ADAPTER_WEIGHTS_FILENAME as WEIGHTS
from twn_rag.training import SFTArguments, average_checkpoints, train_sft
from twn_rag.training.synthetic import write_toy_dataset


@pytest.fixture(scope="module")
def run(tiny_ckpt, tmp_path_factory):
    """A short SFT run that keeps its last two checkpoints (steps 4 and 6)."""
    folder = tmp_path_factory.mktemp("averaging")
    args = SFTArguments(
        output_dir=folder / "sft",
        max_steps=6,
        batch_size=4,
        learning_rate=5e-3,
        save_every=2,
        keep_checkpoints=2,
        show_progress=False,
    )
    create = dict(num_queries=4, lora_rank=4, lora_alpha=8, gate_hidden=16)
    return train_sft(write_toy_dataset(folder / "toy"), tiny_ckpt / "backbone", args, **create)


def test_the_reasoning_adapter_is_the_mean_of_the_last_checkpoints(run, tmp_path):
    out = average_checkpoints(run, tmp_path / "averaged", last=2)
    older, newer = (load_file(run / f"checkpoint-{step}" / "reasoning" / WEIGHTS) for step in (4, 6))
    averaged = load_file(out / "reasoning" / WEIGHTS)
    assert averaged.keys() == newer.keys()
    assert any(not torch.equal(older[k], newer[k]) for k in newer)  # the two checkpoints differ
    for name in newer:
        torch.testing.assert_close(averaged[name], (older[name] + newer[name]) / 2)
    embedding = load_file(out / "embedding" / WEIGHTS)  # not averaged: the newest checkpoint's
    for name, tensor in load_file(run / "checkpoint-6" / "embedding" / WEIGHTS).items():
        assert torch.equal(embedding[name], tensor)
    assert not (out / "trainer_state.pt").exists()
    # a TWN checkpoint like any other: it loads and thinks
    embedder = TWNEmbedder.from_pretrained(out, device="cpu", dtype="float32")
    [result] = embedder.encode(["a query"], budget=ReasoningBudget(mode="always", max_thought_tokens=3))
    assert result.thought_used


def test_averaging_more_checkpoints_than_the_run_kept_is_refused(run, tmp_path):
    with pytest.raises(ValueError, match="2 complete checkpoints, 3 asked for"):
        average_checkpoints(run, tmp_path / "averaged", last=3)
