import dataclasses

import pytest
import torch

from twn_rag import TWNEmbedder
from twn_rag.modeling import EMBEDDING_ADAPTER, REASONING_ADAPTER
from twn_rag.training.data import load_examples
from twn_rag.training.loss_log import LossLog
from twn_rag.training.sft import SFT_PARTS, SFTArguments, embedding_loss, info_nce, reasoning_loss, train_sft
from twn_rag.training.synthetic import write_toy_dataset

TINY_CREATE = dict(num_queries=4, lora_rank=4, lora_alpha=8, gate_hidden=16)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def trainable(tiny_ckpt):
    """A private copy of the tiny TWN (random, non-identity adapters), fp32 on CPU."""
    embedder = TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="float32")
    embedder.model.set_trainable(SFT_PARTS)
    return embedder


def grads(embedder):
    model = embedder.model
    backbone = {n: p.grad for n, p in model.backbone.named_parameters() if "lora_" not in n}
    return (
        {n: p.grad for n, p in model.adapter_parameters(REASONING_ADAPTER).items()},
        {n: p.grad for n, p in model.adapter_parameters(EMBEDDING_ADAPTER).items()},
        model.queries.grad,
        backbone,
    )


def zero(embedder):
    for param in embedder.model.parameters():
        param.grad = None


def embedding_backward(embedder, batch):
    loss, metrics = embedding_loss(embedder, batch, temperature=0.05)
    loss.backward()
    assert "think_loss" in metrics  # both views took part


def reasoning_backward(embedder, batch):
    with embedder.model.use_adapter(REASONING_ADAPTER):
        reasoning_loss(embedder, batch).backward()


def test_embedding_loss_reaches_only_the_embedding_adapter_and_queries(trainable, toy_data):
    zero(trainable)
    embedding_backward(trainable, load_examples(toy_data)[:4])
    reasoning, embedding, queries, backbone = grads(trainable)
    assert reasoning and all(g is None or not g.any() for g in reasoning.values())
    assert all(g is not None for g in embedding.values())
    assert any(g.abs().sum() > 0 for g in embedding.values())
    assert queries is not None and queries.abs().sum() > 0
    assert all(g is None for g in backbone.values())
    assert all(p.grad is None for p in trainable.model.gate.parameters())


def test_thought_loss_reaches_only_the_reasoning_adapter(trainable, toy_data):
    zero(trainable)
    reasoning_backward(trainable, load_examples(toy_data)[:4])
    reasoning, embedding, queries, backbone = grads(trainable)
    assert all(g is not None for g in reasoning.values())
    assert any(g.abs().sum() > 0 for g in reasoning.values())
    assert embedding and all(g is None or not g.any() for g in embedding.values())
    assert queries is None or not queries.any()
    assert all(g is None for g in backbone.values())


def test_gradient_checkpointing_gives_the_same_gradients(tiny_ckpt, toy_data):
    batch = load_examples(toy_data)[:3]
    results = []
    for checkpointing in (False, True):
        embedder = TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="float32")
        embedder.model.set_trainable(SFT_PARTS)
        if checkpointing:
            embedder.model.enable_gradient_checkpointing()
        embedder.model.train()
        reasoning_backward(embedder, batch)
        embedding_backward(embedder, batch)
        reasoning, embedding, queries, _ = grads(embedder)
        results.append((reasoning, embedding, queries))
    (r0, e0, q0), (r1, e1, q1) = results
    for name in r0:
        torch.testing.assert_close(r0[name], r1[name], rtol=1e-4, atol=1e-6)
    for name in e0:
        torch.testing.assert_close(e0[name], e1[name], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(q0, q1, rtol=1e-4, atol=1e-6)


def test_labels_cover_only_the_thought_tokens(trainable):
    processor = trainable.processor
    items = trainable.prepare(["seven plus five", "a much longer query about the invoice total"])
    thoughts = [processor.thought_token_ids("twelve"), processor.thought_token_ids("the sum of the items")]
    batch, labels = processor.reasoning_batch(items, ["think", "think"], thoughts)
    for row, ids in enumerate(thoughts):
        labelled = labels[row][labels[row] != -100].tolist()
        assert labelled == ids and ids[-1] == processor.tokenizer.eos_token_id
        assert batch["attention_mask"][row].sum() == (batch["input_ids"][row] != processor.pad_token_id).sum()


def test_info_nce_ignores_copies_of_the_positive():
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    documents = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 2])
    with_copy = info_nce(queries, documents, targets, 0.1)
    ignore = torch.tensor([[False, True, False], [False, False, False]])
    assert info_nce(queries, documents, targets, 0.1, ignore) < with_copy


def test_losses_go_down_on_a_small_synthetic_set(tiny_ckpt, toy_data, tmp_path):
    args = SFTArguments(
        output_dir=tmp_path / "sft",
        max_steps=16,
        batch_size=4,
        learning_rate=5e-3,
        temperature=0.1,
        show_progress=False,
    )
    out = train_sft(toy_data, tiny_ckpt / "backbone", args, **TINY_CREATE)
    records = LossLog(out / "sft_log.jsonl").read()
    assert [r["step"] for r in records] == list(range(1, 17))

    def mean(key, part):
        values = [r[key] for r in part]
        return sum(values) / len(values)

    for key in ("reasoning_loss", "embedding_loss", "nothink_loss", "think_loss"):
        assert mean(key, records[-4:]) < mean(key, records[:4]), key
    reloaded = TWNEmbedder.from_pretrained(out, device="cpu", dtype="float32")
    assert reloaded.model.num_queries == 4


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_learning_rate_warms_up_then_stays_or_decays(tiny_ckpt, toy_data, tmp_path, schedule):
    args = SFTArguments(
        output_dir=tmp_path / "sft",
        max_steps=6,
        batch_size=4,
        learning_rate=1e-3,
        warmup_steps=2,
        lr_schedule=schedule,
        show_progress=False,
    )
    rates = [
        r["lr"]
        for r in LossLog(train_sft(toy_data, tiny_ckpt / "backbone", args, **TINY_CREATE) / "sft_log.jsonl").read()
    ]
    assert rates[0] < rates[1] < 1e-3 + 1e-12  # warm-up
    if schedule == "constant":
        assert rates[2:] == pytest.approx([1e-3] * 4)
    else:
        assert rates[2] == pytest.approx(1e-3)
        assert all(a > b for a, b in zip(rates[2:], rates[3:]))  # decays every step
        assert 0 < rates[-1] < 1e-3 / 3


def test_an_unknown_learning_rate_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule"):
        SFTArguments(lr_schedule="exponential")


def test_resume_after_interruption_continues_from_the_saved_step(tiny_ckpt, toy_data, tmp_path):
    def args(out):
        return SFTArguments(
            output_dir=out,
            max_steps=4,
            batch_size=2,
            grad_accum=2,
            learning_rate=5e-3,
            save_every=2,
            show_progress=False,
            log_format="csv",
        )

    full = train_sft(toy_data, tiny_ckpt / "backbone", args(tmp_path / "full"), **TINY_CREATE)

    def crash_at_3(step, record):
        if step == 3:
            raise KeyboardInterrupt

    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train_sft(toy_data, tiny_ckpt / "backbone", args(interrupted), on_step_end=crash_at_3, **TINY_CREATE)
    assert (interrupted / "checkpoint-2" / "trainer_state.pt").is_file()
    assert not (interrupted / "checkpoint-4").exists()
    seen = []
    train_sft(
        toy_data, tiny_ckpt / "backbone", args(interrupted), on_step_end=lambda s, r: seen.append(s), **TINY_CREATE
    )
    assert seen == [3, 4]  # continued after the saved step 2
    assert [r["step"] for r in LossLog(interrupted / "sft_log.csv", "csv").read()] == [1, 2, 3, 4]
    assert [p.name for p in interrupted.glob("checkpoint-*")] == ["checkpoint-4"]  # older ones pruned
    a = TWNEmbedder.from_pretrained(full, device="cpu", dtype="float32").model
    b = TWNEmbedder.from_pretrained(interrupted, device="cpu", dtype="float32").model
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=name)
    log_full = LossLog(full / "sft_log.csv", "csv").read()
    log_resumed = LossLog(interrupted / "sft_log.csv", "csv").read()
    assert log_full[3]["embedding_loss"] == pytest.approx(log_resumed[3]["embedding_loss"], rel=1e-4)


def test_a_pair_whose_only_thought_is_the_documents_takes_part_in_the_think_view(trainable, toy_data):
    """The think view compares the plain query with the positive embedded with its thought."""
    document_only = [dataclasses.replace(e, query_thought=None) for e in load_examples(toy_data)[:4]]
    assert [bool(e.positive_thought) for e in document_only] == [False, True, False, True]
    _, metrics = embedding_loss(trainable, document_only, temperature=0.05)
    assert "think_loss" in metrics
    no_thoughts = [dataclasses.replace(e, positive_thought=None) for e in document_only]
    assert "think_loss" not in embedding_loss(trainable, no_thoughts, temperature=0.05)[1]


def test_a_think_view_only_pair_teaches_neither_the_reasoning_adapter_nor_the_no_think_view(trainable, toy_data):
    """Counterfactual pairs (made-up facts in the thought) reach the think view only."""
    examples = load_examples(toy_data)[:4]
    flagged = [dataclasses.replace(e, think_view_only=True) for e in examples]
    with trainable.model.use_adapter(REASONING_ADAPTER):
        assert reasoning_loss(trainable, flagged) is None
        mixed = reasoning_loss(trainable, examples[:2] + flagged[2:])
        assert torch.allclose(mixed, reasoning_loss(trainable, examples[:2]))
    with torch.no_grad():
        _, only_flagged = embedding_loss(trainable, flagged, temperature=0.05)
        _, plain = embedding_loss(trainable, examples, temperature=0.05)
    assert "think_loss" in only_flagged and "nothink_loss" not in only_flagged
    assert {"think_loss", "nothink_loss"} <= set(plain)
