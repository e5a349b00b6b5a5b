"""Training and inference build byte-identical embedding-pass batches for the same input:
the batches ``TWNModel.embed`` receives are recorded (the real pass still runs) and compared."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest
import torch

from twn_rag import ReasoningBudget
from twn_rag.samples import make_sample_image
from twn_rag.training.data import parse_record
from twn_rag.training.gate import collect_gate_data
from twn_rag.training.sft import embedding_loss

NEVER = dict(mode="never")
PIXEL_KEYS = {"pixel_values": "image_grid_thw", "pixel_values_videos": "video_grid_thw"}


@pytest.fixture(params=["text", "image", "video"])
def example(request, tmp_path, sample_video):
    """One training example whose query and positive are of the parametrised modality."""
    make_sample_image(seed=11).save(tmp_path / "query.png")
    make_sample_image((64, 96), seed=12).save(tmp_path / "page.png")
    records = {
        "text": {
            "query": "What is seven plus five?",
            "positive": "Seven plus five equals twelve.",
            "instruction": "Find the sum.",
        },
        "image": {"query": {"text": "the red square", "image": "query.png"}, "positive": {"image": "page.png"}},
        "video": {"query": "a ball moving to the right", "positive": {"text": "a clip", "video": str(sample_video)}},
    }
    return parse_record(records[request.param], tmp_path / "data.jsonl", 1)


@contextmanager
def recorded_batches(embedder, monkeypatch):
    """The batches every embedding pass receives, in call order."""
    batches: list[dict] = []
    real_embed = embedder.model.embed

    def recording_embed(batch):
        batches.append({k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()})
        return real_embed(batch)

    with monkeypatch.context() as patch:
        patch.setattr(embedder.model, "embed", recording_embed)
        yield batches


def assert_identical(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    assert "input_ids" in actual and "attention_mask" in actual
    for key, value in expected.items():
        if torch.is_tensor(value):
            assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key


def row(batch: dict, index: int) -> dict:
    """Row ``index`` of a left-padded batch whose rows hold at most one image or video each:
    its per-token tensors without the padding, and its own pixels and grid."""
    shape = batch["input_ids"].shape
    start = int(batch["attention_mask"][index].argmax())  # the first attended position
    picked = {k: v[index : index + 1, start:] for k, v in batch.items() if torch.is_tensor(v) and v.shape == shape}
    for pixels, grid in PIXEL_KEYS.items():
        if pixels in batch:
            sizes = batch[grid].prod(dim=-1).tolist()
            picked[pixels] = batch[pixels].split(sizes)[index]
            picked[grid] = batch[grid][index : index + 1]
    return picked


def test_sft_builds_the_no_think_batches_that_encode_builds(embedder, example, monkeypatch):
    with recorded_batches(embedder, monkeypatch) as training:
        embedding_loss(embedder, [example], temperature=0.05)
    with recorded_batches(embedder, monkeypatch) as inference:
        embedder.encode([example.query], role="query", budget=ReasoningBudget(**NEVER))
        embedder.encode([example.positive], role="document", budget=ReasoningBudget(**NEVER))
    assert len(training) == len(inference) == 2  # the queries' pass, the documents' pass
    for built_for_training, built_for_inference in zip(training, inference):
        assert_identical(built_for_training, built_for_inference)


def test_sft_think_view_is_the_row_encode_builds_with_the_same_thought(embedder, example, monkeypatch):
    embedder.thought_cache.clear()
    with recorded_batches(embedder, monkeypatch) as inference:
        [result] = embedder.encode(
            [example.query], role="query", budget=ReasoningBudget(mode="always", max_thought_tokens=6)
        )
    assert result.thought, "the tiny model should write a thought"
    with recorded_batches(embedder, monkeypatch) as training:
        embedding_loss(embedder, [dataclasses.replace(example, query_thought=result.thought)], temperature=0.05)
    # Training's query pass holds the no-think row, then the think row; inference's second
    # pass is the input embedded with its thought.
    no_think, with_thought = row(training[0], 0), row(training[0], 1)
    assert_identical(no_think, row(inference[0], 0))
    assert_identical(with_thought, row(inference[1], 0))


def test_gate_labels_start_from_the_pass_encode_makes(embedder, example, monkeypatch):
    with recorded_batches(embedder, monkeypatch) as batches:
        collect_gate_data(embedder, [example], max_thought_tokens=4)
    # The documents (encode), the queries' features (training), then encode's own no-think
    # pass over the same queries and its pass with their thoughts.
    assert len(batches) == 4
    assert_identical(batches[1], batches[2])
