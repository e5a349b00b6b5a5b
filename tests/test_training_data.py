import json

import pytest
import torch

from twn_rag.inputs import InvalidInputError
from twn_rag.samples import make_sample_image
from twn_rag.training.data import DataFormatError, document_corpus, load_examples, prepare_inputs
from twn_rag.training.loop import TrainingArguments, batch_indices, training_precision
from twn_rag.training.loss_log import LossLog
from twn_rag.training.synthetic import write_toy_dataset


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture()
def media(tmp_path):
    (tmp_path / "img").mkdir()
    make_sample_image(seed=1).save(tmp_path / "img" / "a.png")
    (tmp_path / "frames").mkdir()
    for i in range(2):
        make_sample_image(seed=i).save(tmp_path / "frames" / f"{i}.png")
    return tmp_path


def test_valid_file_resolves_paths_relative_to_the_file(media):
    path = write_lines(
        media / "train.jsonl",
        [
            {
                "id": 7,
                "query": {"text": "what is shown", "image": "img/a.png"},
                "positive": "a red square",
                "negatives": [{"video": ["frames/0.png", "frames/1.png"], "video_fps": 2}, "a blue circle"],
                "query_thought": "shapes",
                "positive_thought": "colours",
                "instruction": "Find the matching caption.",
            },
            "",  # blank lines are skipped
            {"query": "second", "positive": {"text": "doc", "instruction": "Represent the doc."}},
        ],
    )
    first, second = load_examples(path)
    assert first.query == {
        "text": "what is shown",
        "images": [str(media / "img" / "a.png")],
        "instruction": "Find the matching caption.",
    }
    assert first.positive == {"text": "a red square"}
    assert first.negatives[0]["video"] == [str(media / "frames" / "0.png"), str(media / "frames" / "1.png")]
    assert first.negatives[0]["video_fps"] == 2.0
    assert (first.query_thought, first.positive_thought, first.id) == ("shapes", "colours", "7")
    assert (first.line, second.line) == (1, 3)
    assert second.negatives == () and second.query_thought is None
    assert second.positive["instruction"] == "Represent the doc."


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"query": "q", "positive": ', "not valid JSON"),
        ('["q", "p"]', "must be a JSON object"),
        ({"query": "q"}, "missing 'positive'"),
        ({"query": "q", "positive": "p", "negative": ["n"]}, "unknown keys ['negative']"),
        ({"query": "q", "positive": "p", "negatives": "n"}, "'negatives' must be a list"),
        ({"query": {"text": ""}, "positive": "p"}, "'query' is empty"),
        ({"query": "q", "positive": 3}, "'positive' must be a string or an object"),
        ({"query": "q", "positive": {"image": "img/missing.png"}}, "positive image not found"),
        ({"query": "q", "positive": "p", "negatives": [{"video": "clip.mp4"}]}, "negatives[0] video not found"),
        ({"query": {"text": "q", "colour": "red"}, "positive": "p"}, "'query' has unknown keys ['colour']"),
        ({"query": "q", "positive": "p", "query_thought": 5}, "'query_thought' must be a non-empty string"),
        ({"query": {"text": "q", "video": "img/a.png", "video_fps": -1}, "positive": "p"}, "video_fps"),
        ({"query": "q", "positive": "p", "query_thought": "t", "think_view_only": 1}, "must be true or false"),
        ({"query": "q", "positive": "p", "think_view_only": True}, "needs a query_thought or a positive_thought"),
    ],
)
def test_malformed_line_names_file_line_and_reason(media, line, reason):
    path = write_lines(media / "bad.jsonl", [{"query": "fine", "positive": "fine"}, line])
    with pytest.raises(DataFormatError) as info:
        load_examples(path)
    assert info.value.path == str(path) and info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: ")
    assert reason in info.value.reason


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataFormatError, match="no examples"):
        load_examples(write_lines(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_examples(tmp_path / "nope.jsonl")


def test_unreadable_media_fails_with_its_line(embedder, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    path = write_lines(
        tmp_path / "d.jsonl",
        [{"query": "ok", "positive": "ok"}, {"query": "q", "positive": {"image": "broken.png"}}],
    )
    examples = load_examples(path)  # the file exists, so loading the lines succeeds
    with pytest.raises(InvalidInputError, match=r"input 1 \(.*d.jsonl:2\): cannot read image"):
        prepare_inputs(embedder, [e.positive for e in examples], examples)


def test_document_corpus_deduplicates(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            {"query": "a", "positive": "shared", "negatives": ["n1"]},
            {"query": "b", "positive": "shared", "negatives": ["n1", "n2"]},
            {"query": "c", "positive": "n2"},
        ],
    )
    documents, positives, negatives = document_corpus(load_examples(path))
    assert documents == [{"text": "shared"}, {"text": "n1"}, {"text": "n2"}]
    assert positives == [0, 0, 2] and negatives == [[1], [1, 2], []]


def test_toy_dataset_loads(tmp_path):
    examples = load_examples(write_toy_dataset(tmp_path))
    assert len(examples) == 8
    assert sum(1 for e in examples if "images" in e.positive) == 4
    assert all(e.query_thought for e in examples)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_loss_log_round_trip_and_truncate(tmp_path, fmt):
    log = LossLog(tmp_path / f"log.{fmt}", fmt)
    log.append({"step": 1, "loss": 2.5})
    log.append({"step": 2, "loss": 2.0, "kl": 0.1})  # a new column
    log.append({"step": 3, "loss": 1.5, "kl": 0.2})
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    assert log.read()[2] == {"step": 3, "loss": 1.5, "kl": 0.2}
    log.truncate(2)
    assert [r["step"] for r in log.read()] == [1, 2]
    assert log.read()[0]["loss"] == 2.5


def test_batches_cover_each_epoch_and_repeat_for_a_seed():
    epoch = [batch_indices(10, 4, seed=3, micro_index=i) for i in range(3)]
    assert sorted(i for batch in epoch for i in batch) == list(range(10))
    assert [len(b) for b in epoch] == [4, 4, 2]
    assert batch_indices(10, 4, 3, 1) == epoch[1]
    assert batch_indices(10, 4, 3, 3) != epoch[0] or batch_indices(10, 4, 3, 4) != epoch[1]  # reshuffled


def test_step_count_and_precision_choices():
    assert TrainingArguments(batch_size=4, grad_accum=2, epochs=2).total_steps(10) == 3
    assert TrainingArguments(max_steps=7).total_steps(10) == 7
    assert training_precision(torch.device("cpu")) == (torch.float32, False)
    assert training_precision(torch.device("cuda")) == (torch.bfloat16, True)
    assert training_precision(torch.device("cpu"), "bf16") == (torch.bfloat16, False)
    with pytest.raises(ValueError, match="bfloat16"):
        training_precision(torch.device("cuda"), "fp16")
    with pytest.raises(ValueError, match="batch_size"):
        TrainingArguments(batch_size=0)
