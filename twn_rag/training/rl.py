"""Stage 3: embedding-guided RL (GRPO) on the ``reasoning`` adapter.

For each query, a group of ``group_size`` thoughts is sampled from the reasoning adapter;
each thought is embedded with the query through the (frozen) embedding adapter, exactly as at
inference, and earns the **gap reward** cos(positive) - max cos(negative) (negatives: the
query's hard negatives and the other positives of the batch; documents embedded without
thinking). Advantages are the rewards normalised within their group. The loss is the clipped
ratio objective plus ``kl_coef`` x KL to the frozen SFT reasoning adapter, which sits on the
same backbone as a third adapter ``reasoning_ref`` (never saved): no second backbone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from twn_rag.budget import ReasoningBudget
from twn_rag.embedder import TWNEmbedder
from twn_rag.modeling import REASONING_ADAPTER
from twn_rag.training.data import RetrievalExample, load_examples, prepare_inputs, side_key
from twn_rag.training.loading import load_for_training
from twn_rag.training.loop import TrainingArguments, TrainingLoop, batch_indices, resolve_training_device, seed_step

logger = logging.getLogger(__name__)

REFERENCE_ADAPTER = "reasoning_ref"


@dataclass
class RLArguments(TrainingArguments):
    """GRPO options. ``batch_size`` queries per micro-step, each with ``group_size`` sampled
    thoughts of at most ``max_thought_tokens`` (default: the checkpoint's), sampled at
    ``sampling_temperature`` / ``top_p`` / ``top_k`` (0: off). ``updates_per_batch`` optimizer steps reuse one
    sampled batch (the clipped ratio matters from the second on)."""

    batch_size: int = 4
    learning_rate: float = 1e-5
    group_size: int = 4
    max_thought_tokens: int | None = None
    sampling_temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    clip_epsilon: float = 0.2
    kl_coef: float = 0.04
    updates_per_batch: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages are relative to the group), got {self.group_size}")
        if self.updates_per_batch < 1:
            raise ValueError(f"updates_per_batch must be >= 1, got {self.updates_per_batch}")
        if self.sampling_temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("sampling_temperature must be > 0 and top_p within (0, 1]")


def gap_rewards(vectors: torch.Tensor, positives: torch.Tensor, negatives: Sequence[torch.Tensor]) -> torch.Tensor:
    """cos(vector, its positive) - max cos(vector, its negatives) per row (the similarity to
    the positive alone when a row has no negative). Inputs are L2-normalised."""
    rewards = (vectors * positives).sum(dim=-1)
    best = torch.stack([(n @ v).max() if len(n) else v.new_zeros(()) for v, n in zip(vectors, negatives)])
    return rewards - best


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """(reward - group mean) / (group std + eps); rows of a group are consecutive."""
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    return (centred / (groups.std(dim=1, keepdim=True) + eps)).view(-1)


def grpo_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    clip_epsilon: float,
    kl_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO objective to minimise, averaged over each thought's tokens then over thoughts:
    -min(ratio * A, clip(ratio, 1 +- eps) * A) + kl_coef * KL, with the per-token KL estimate
    exp(ref - logp) - (ref - logp) - 1 (>= 0). Tensors are ``[B, T]`` except ``advantages [B]``."""
    mask = mask.float()
    ratio = torch.exp(log_probs - old_log_probs)
    advantage = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * advantage, ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon) * advantage)
    delta = ref_log_probs - log_probs
    kl = torch.exp(delta) - delta - 1
    per_token = -(surrogate - kl_coef * kl) * mask
    lengths = mask.sum(dim=1).clamp(min=1)
    loss = (per_token.sum(dim=1) / lengths).mean()
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip_epsilon).float() * mask
        stats = {
            "kl": float(((kl * mask).sum(dim=1) / lengths).mean()),
            "clip_fraction": float(clipped.sum() / mask.sum().clamp(min=1)),
        }
    return loss, stats


@dataclass
class Rollout:
    """One sampled batch: the policy-input batch and labels, and per thought its reward,
    advantage, old and reference log-probs, and length."""

    batch: dict
    labels: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    old_log_probs: torch.Tensor | None
    ref_log_probs: torch.Tensor
    thought_tokens: list[int]


class DocumentVectors:
    """No-think document vectors of positives and hard negatives, computed once per example
    (the embedding adapter does not change during RL)."""

    def __init__(self, embedder: TWNEmbedder, batch_size: int):
        self.embedder = embedder
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    def get(self, sides: Sequence[dict]) -> torch.Tensor:
        keys = [side_key(side) for side in sides]
        missing = {k: s for k, s in zip(keys, sides) if k not in self._cache}
        if missing:
            results = self.embedder.encode(
                list(missing.values()),
                role="document",
                budget=ReasoningBudget(mode="never"),
                batch_size=self.batch_size,
            )
            for key, result in zip(missing, results):
                self._cache[key] = torch.from_numpy(result.vector)
        device = self.embedder.model.device
        return torch.stack([self._cache[k] for k in keys]).to(device) if keys else torch.empty(0, device=device)


def sample_rollout(
    embedder: TWNEmbedder,
    examples: Sequence[RetrievalExample],
    args: RLArguments,
    documents: DocumentVectors,
    autocast=None,
) -> Rollout:
    """Sample ``group_size`` thoughts per query, embed each with its query, reward them, and
    record the old (current policy) and reference log-probs, all without gradients."""
    model, processor = embedder.model, embedder.processor
    group = args.group_size
    max_tokens = args.max_thought_tokens or embedder.config.max_thought_tokens
    items = prepare_inputs(embedder, [e.query for e in examples], examples)
    repeated = [i for i in range(len(items)) for _ in range(group)]
    rep_items = [items[i] for i in repeated]
    model.eval()  # sampling with the KV cache (gradient checkpointing turns it off in train mode)
    with torch.no_grad(), autocast or contextlib.nullcontext():
        generated = model.generate_thoughts(
            embedder.generation_batch(rep_items, "query"),
            max_new_tokens=max_tokens,
            do_sample=True,
            temperature=args.sampling_temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            pad_token_id=processor.pad_token_id,
        )
        thought_ids = processor.generated_token_ids(generated)
        texts, counts = processor.decode_thoughts(generated)
        vectors, _ = embedder.embed_items(rep_items, "query", texts)
        positives = documents.get([e.positive for e in examples])
        negatives = []
        for index, example in enumerate(examples):
            own = side_key(example.positive)
            others = [e.positive for j, e in enumerate(examples) if j != index]
            sides = [s for s in (*example.negatives, *others) if side_key(s) != own]
            negatives.append(documents.get(sides))
        rewards = gap_rewards(vectors.float(), positives[repeated], [negatives[i] for i in repeated])
        batch, labels = embedder.reasoning_batch(rep_items, "query", thought_ids)
        ref_log_probs, _ = model.thought_log_probs(batch, labels, REFERENCE_ADAPTER, args.sampling_temperature)
        old_log_probs = None  # one update per batch: the ratio is exactly 1, no extra pass needed
        if args.updates_per_batch > 1:
            old_log_probs, _ = model.thought_log_probs(batch, labels, REASONING_ADAPTER, args.sampling_temperature)
    model.train()
    return Rollout(
        batch=batch,
        labels=labels,
        rewards=rewards.cpu(),
        advantages=group_advantages(rewards, group),
        old_log_probs=old_log_probs,
        ref_log_probs=ref_log_probs,
        thought_tokens=counts,
    )


def train_rl(
    data: str | Path | Sequence[RetrievalExample],
    base: str | Path,
    args: RLArguments,
    *,
    base_model: str | Path | None = None,
    on_step_end: Callable[[int, dict], None] | None = None,
) -> Path:
    """GRPO on the reasoning adapter of the TWN checkpoint ``base`` (its reasoning adapter is
    also the frozen KL reference). Writes the released layout, checkpoints and
    ``rl_log.jsonl``/``.csv`` (reward, KL, thought length per step) to ``args.output_dir``."""
    examples = load_examples(data) if isinstance(data, (str, Path)) else list(data)
    device, dtype, autocast = resolve_training_device(args)
    embedder = load_for_training(base, device=device, dtype=dtype, base_model=base_model, require_twn=True)
    embedder.model.add_frozen_copy(REASONING_ADAPTER, REFERENCE_ADAPTER)
    total = args.max_steps or args.total_steps(len(examples)) * args.updates_per_batch
    loop = TrainingLoop("rl", embedder.model, args, [REASONING_ADAPTER], total, autocast)
    loop.run(rl_step(embedder, examples, args, loop), on_step_end)
    embedder.model.save(args.output_dir)
    logger.info("RL done: %s", args.output_dir)
    return Path(args.output_dir)


def rl_step(
    embedder: TWNEmbedder, examples: Sequence[RetrievalExample], args: RLArguments, loop: TrainingLoop
) -> Callable[[int, int], dict[str, float]]:
    """The micro-step of GRPO for ``TrainingLoop.run``. A sampled batch serves
    ``updates_per_batch`` consecutive optimizer steps; a resumed run re-samples it."""
    model = embedder.model
    documents = DocumentVectors(embedder, args.batch_size)
    rollouts: dict[int, Rollout] = {}

    def step(step_index: int, micro: int) -> dict[str, float]:
        batch_number = (step_index // args.updates_per_batch) * args.grad_accum + micro
        if batch_number not in rollouts:
            if micro == 0:
                rollouts.clear()
            seed_step(args.seed + 1, batch_number)  # the same samples after a resume
            indices = batch_indices(len(examples), args.batch_size, args.seed, batch_number)
            rollouts[batch_number] = sample_rollout(
                embedder, [examples[i] for i in indices], args, documents, loop.autocast()
            )
        rollout = rollouts[batch_number]
        with model.use_adapter(REASONING_ADAPTER):
            with loop.autocast():
                log_probs, mask = model.thought_log_probs(
                    rollout.batch, rollout.labels, REASONING_ADAPTER, args.sampling_temperature
                )
                loss, stats = grpo_loss(
                    log_probs,
                    log_probs.detach() if rollout.old_log_probs is None else rollout.old_log_probs,
                    rollout.ref_log_probs,
                    mask,
                    rollout.advantages,
                    args.clip_epsilon,
                    args.kl_coef,
                )
            (loss / args.grad_accum).backward()
        return {
            "loss": loss.item(),
            "reward": float(rollout.rewards.mean()),
            "reward_std": float(rollout.rewards.std()),
            "thought_tokens": float(np.mean(rollout.thought_tokens)),
            **stats,
        }

    return step
