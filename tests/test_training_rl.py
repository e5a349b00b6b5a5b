import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

from twn_rag import TWNEmbedder
from twn_rag.modeling import REASONING_ADAPTER
from twn_rag.training.data import load_examples
from twn_rag.training.loss_log import LossLog
from twn_rag.training.rl import (
    REFERENCE_ADAPTER,
    DocumentVectors,
    RLArguments,
    gap_rewards,
    group_advantages,
    grpo_loss,
    sample_rollout,
    train_rl,
)
from twn_rag.training.synthetic import TOY_PAIRS


def test_group_advantages_are_normalised_per_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 40.0])
    advantages = group_advantages(rewards, group_size=3).view(2, 3)
    torch.testing.assert_close(advantages.mean(dim=1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(advantages.std(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    assert advantages[0].argmax() == 2 and advantages[1].argmax() == 2


def test_gap_reward_is_positive_minus_best_negative():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    negatives = [torch.tensor([[0.0, 1.0], [0.8, 0.6]]), torch.empty(0, 2)]
    torch.testing.assert_close(gap_rewards(vectors, positives, negatives), torch.tensor([0.6 - 0.8, 0.8]))


def test_ratio_is_clipped_and_kl_is_zero_at_the_reference():
    mask = torch.ones(2, 3, dtype=torch.bool)
    old = torch.full((2, 3), -1.0)
    advantages = torch.tensor([1.0, -1.0])
    # far above 1 + eps with a positive advantage, far below 1 - eps with a negative one: no gradient
    log_probs = torch.tensor([[0.0, 0.0, 0.0], [-3.0, -3.0, -3.0]], requires_grad=True)
    loss, stats = grpo_loss(log_probs, old, log_probs.detach(), mask, advantages, 0.2, kl_coef=0.0)
    loss.backward()
    assert not log_probs.grad.any() and stats["clip_fraction"] == 1.0 and stats["kl"] == 0.0
    # inside the trust region the gradient raises good thoughts and lowers bad ones
    log_probs = old.clone().requires_grad_(True)
    loss, _ = grpo_loss(log_probs, old, old, mask, advantages, 0.2, kl_coef=0.0)
    loss.backward()
    assert (log_probs.grad[0] < 0).all() and (log_probs.grad[1] > 0).all()
    _, stats = grpo_loss(old + 0.5, old, old, mask, advantages, 0.2, kl_coef=0.1)
    assert stats["kl"] > 0


def write_queries(path, indices):
    lines = [
        json.dumps({"query": TOY_PAIRS[i][0], "positive": TOY_PAIRS[i][1], "negatives": [TOY_PAIRS[i][2]]})
        for i in indices
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reference_adapter_shares_the_backbone_and_is_not_saved(tiny_ckpt, tmp_path):
    embedder = TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="float32")
    model = embedder.model
    before = sum(p.numel() for p in model.parameters())
    model.add_frozen_copy(REASONING_ADAPTER, REFERENCE_ADAPTER)
    model.set_trainable([REASONING_ADAPTER])
    lora = sum(p.numel() for p in model.adapter_parameters(REASONING_ADAPTER).values())
    assert sum(p.numel() for p in model.parameters()) == before + lora  # one more adapter, not a backbone
    assert not any(p.requires_grad for p in model.adapter_parameters(REFERENCE_ADAPTER).values())
    examples = load_examples(write_queries(tmp_path / "q.jsonl", [0, 1]))
    args = RLArguments(output_dir=tmp_path, batch_size=2, group_size=3, max_thought_tokens=4)
    rollout = sample_rollout(embedder, examples, args, DocumentVectors(embedder, 2))
    assert rollout.rewards.shape == (6,) and len(rollout.thought_tokens) == 6
    policy, mask = model.thought_log_probs(rollout.batch, rollout.labels, REASONING_ADAPTER)
    torch.testing.assert_close(policy, rollout.ref_log_probs)  # identical before any update
    assert (policy[mask] < 0).all()
    model.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir() if p.is_dir()) == ["embedding", "reasoning"]


def test_mean_reward_rises_on_a_toy_set(tiny_ckpt, tmp_path):
    """One query, eight sampled thoughts per step, a high learning rate. (On the random tiny
    model, queries compete for one nearly shared thought distribution, so a single query
    isolates the effect of the reward.)"""
    data = write_queries(tmp_path / "toy.jsonl", [1])
    args = RLArguments(
        output_dir=tmp_path / "rl",
        max_steps=16,
        batch_size=1,
        group_size=8,
        max_thought_tokens=4,
        top_k=8,
        learning_rate=3e-2,
        kl_coef=0.0,
        show_progress=False,
    )
    out = train_rl(data, tiny_ckpt, args)
    records = LossLog(out / "rl_log.jsonl").read()
    assert {"reward", "kl", "thought_tokens", "loss", "clip_fraction"} <= set(records[0])
    rewards = [r["reward"] for r in records]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.005, rewards
    assert records[-1]["kl"] > 0  # the policy moved away from the frozen SFT adapter
    trained = TWNEmbedder.from_pretrained(out, device="cpu", dtype="float32").model
    start = TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="float32").model
    for adapter, should_change in ((REASONING_ADAPTER, True), ("embedding", False)):
        changed = any(
            not torch.equal(a, b)
            for a, b in zip(trained.adapter_parameters(adapter).values(), start.adapter_parameters(adapter).values())
        )
        assert changed == should_change, adapter
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_ckpt / "backbone"))
    assert sum(p.numel() for p in trained.parameters()) < 2 * sum(p.numel() for p in base.parameters())


def test_several_updates_per_batch_use_the_clipped_ratio(tiny_ckpt, tmp_path):
    data = write_queries(tmp_path / "toy.jsonl", [0, 1])
    args = RLArguments(
        output_dir=tmp_path / "rl",
        max_steps=4,
        batch_size=2,
        group_size=4,
        max_thought_tokens=3,
        learning_rate=5e-2,
        updates_per_batch=2,
        kl_coef=0.1,
        show_progress=False,
    )
    records = LossLog(train_rl(data, tiny_ckpt, args) / "rl_log.jsonl").read()
    # steps 1-2 share a sampled batch, 3-4 the next: same rewards within a pair
    assert records[0]["reward"] == records[1]["reward"] and records[2]["reward"] == records[3]["reward"]
    assert records[0]["clip_fraction"] == 0.0 and records[1]["kl"] > 0


@pytest.mark.parametrize("bad", [dict(group_size=1), dict(updates_per_batch=0), dict(top_p=0.0)])
def test_bad_rl_options_are_refused(bad):
    with pytest.raises(ValueError):
        RLArguments(**bad)


def test_rl_resumes_with_the_same_samples(tiny_ckpt, tmp_path):
    data = write_queries(tmp_path / "toy.jsonl", [0, 1])

    def args(out):
        return RLArguments(
            output_dir=out,
            max_steps=4,
            batch_size=2,
            group_size=3,
            max_thought_tokens=3,
            learning_rate=1e-2,
            save_every=2,
            show_progress=False,
        )

    full = LossLog(train_rl(data, tiny_ckpt, args(tmp_path / "full")) / "rl_log.jsonl").read()

    def crash_at_3(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rl(data, tiny_ckpt, args(tmp_path / "cut"), on_step_end=crash_at_3)
    resumed = LossLog(train_rl(data, tiny_ckpt, args(tmp_path / "cut")) / "rl_log.jsonl").read()
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(full, resumed):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["thought_tokens"] == b["thought_tokens"]
