"""Stage 1: joint SFT with gradient detachment.

Two losses, each reaching only its own parameters:

- **reasoning**: next-token loss on the reference thoughts (labels on the thought tokens
  only, including the end-of-turn token so the adapter learns to stop) through the
  ``reasoning`` adapter;
- **embedding**: InfoNCE of queries against the batch's positives (in-batch negatives) and
  hard negatives, on the no-think view and on the think view (queries, and positives that
  have one, embedded with their reference thought), through the ``embedding`` adapter and
  the learnable queries.

A pair marked ``think_view_only`` (see ``twn_rag.training.data``) takes part in the think
view only: neither the reasoning loss nor the no-think view sees it.

The thought reaches the embedding pass as tokens, so no gradient crosses from one adapter
to the other; the backbone is frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from twn_rag.embedder import TWNEmbedder
from twn_rag.modeling import EMBEDDING_ADAPTER, QUERIES_PART, REASONING_ADAPTER
from twn_rag.training.data import RetrievalExample, load_examples, prepare_inputs, side_key
from twn_rag.training.loading import load_for_training
from twn_rag.training.loop import TrainingArguments, TrainingLoop, resolve_training_device

logger = logging.getLogger(__name__)

SFT_PARTS = (REASONING_ADAPTER, EMBEDDING_ADAPTER, QUERIES_PART)


@dataclass
class SFTArguments(TrainingArguments):
    """SFT options: InfoNCE ``temperature`` and the weights of the two losses."""

    temperature: float = 0.05
    reasoning_weight: float = 1.0
    embedding_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def info_nce(
    queries: torch.Tensor,
    documents: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each query over all ``documents`` (cosine / ``temperature``), the
    right one at ``targets``. ``ignore[i, j]`` True drops document j for query i (e.g. a copy
    of its own positive, which must not count as a negative)."""
    logits = queries @ documents.T / temperature
    if ignore is not None:
        logits = logits.masked_fill(ignore, float("-inf"))
    return F.cross_entropy(logits, targets)


def reasoning_loss(embedder: TWNEmbedder, examples: Sequence[RetrievalExample]) -> torch.Tensor | None:
    """Mean next-token loss over the reference-thought tokens of the queries and positives of
    ``examples`` that have one (``None`` when none has). Backpropagate it while the reasoning
    adapter is active (``with model.use_adapter("reasoning")``), which gradient
    checkpointing needs to recompute the same pass."""
    processor = embedder.processor
    sides, owners, roles, thoughts = [], [], [], []
    for example in examples:
        if example.think_view_only:
            continue
        for side, role, thought in (
            (example.query, "query", example.query_thought),
            (example.positive, "document", example.positive_thought),
        ):
            if thought:
                sides.append(side)
                owners.append(example)
                roles.append(role)
                thoughts.append(thought)
    if not sides:
        return None
    items = prepare_inputs(embedder, sides, owners)
    batch, labels = embedder.reasoning_batch(items, roles, [processor.thought_token_ids(t) for t in thoughts])
    log_probs, mask = embedder.model.thought_log_probs(batch, labels, REASONING_ADAPTER)
    return -log_probs.sum() / mask.sum()


def embedding_loss(
    embedder: TWNEmbedder, examples: Sequence[RetrievalExample], temperature: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """InfoNCE over the no-think view and, for pairs with a reference thought on either side,
    the think view (each side with its thought where it has one, else as it is: a query that
    needs no thought still has to find a positive that thought). Documents: every positive of
    the batch plus every hard negative; pairs marked ``think_view_only`` are queries of the
    think view only (their documents still count as candidates in both). Returns the mean of
    the views' losses and per-view metrics (loss, in-batch top-1 accuracy)."""
    model = embedder.model
    n = len(examples)
    thinking = [i for i, e in enumerate(examples) if e.query_thought or e.positive_thought]
    query_thinking = [i for i in thinking if examples[i].query_thought]

    query_items = prepare_inputs(embedder, [e.query for e in examples], examples)
    query_vectors, _ = embedder.embed_items(
        query_items + [query_items[i] for i in query_thinking],
        "query",
        [None] * n + [examples[i].query_thought for i in query_thinking],
    )
    think_row = {i: n + k for k, i in enumerate(query_thinking)}
    think_queries = query_vectors[[think_row.get(i, i) for i in thinking]]

    positive_thinking = [i for i in range(n) if examples[i].positive_thought]
    negative_owners = [e for e in examples for _ in e.negatives]
    doc_sides = [e.positive for e in examples] + [side for e in examples for side in e.negatives]
    doc_items = prepare_inputs(embedder, doc_sides, list(examples) + negative_owners)
    doc_vectors, _ = embedder.embed_items(
        doc_items + [doc_items[i] for i in positive_thinking],
        "document",
        [None] * len(doc_items) + [examples[i].positive_thought for i in positive_thinking],
    )
    plain_docs = doc_vectors[: len(doc_items)]

    keys = [side_key(side) for side in doc_sides]
    same = torch.tensor([[keys[i] == keys[j] for j in range(len(keys))] for i in range(n)], device=model.device)
    targets = torch.arange(n, device=model.device)
    ignore = same & ~F.one_hot(targets, len(keys)).bool()

    metrics: dict[str, float] = {}
    losses = []
    plain = [i for i, e in enumerate(examples) if not e.think_view_only]
    if plain:
        nothink = info_nce(query_vectors[plain], plain_docs, targets[plain], temperature, ignore[plain])
        metrics["nothink_loss"] = nothink.item()
        metrics["nothink_acc"] = _top1(query_vectors[plain], plain_docs, targets[plain], ignore[plain])
        losses.append(nothink)
    if thinking:
        think_docs = plain_docs.clone()
        if positive_thinking:
            think_docs[positive_thinking] = doc_vectors[len(doc_items) :]
        think_targets = targets[thinking]
        think = info_nce(think_queries, think_docs, think_targets, temperature, ignore[thinking])
        metrics["think_loss"] = think.item()
        metrics["think_acc"] = _top1(think_queries, think_docs, think_targets, ignore[thinking])
        losses.append(think)
    return torch.stack(losses).mean(), metrics


def _top1(queries: torch.Tensor, documents: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor) -> float:
    with torch.no_grad():
        scores = (queries @ documents.T).masked_fill(ignore, float("-inf"))
        return float((scores.argmax(dim=1) == targets).float().mean())


def train_sft(
    data: str | Path | Sequence[RetrievalExample],
    base: str | Path,
    args: SFTArguments,
    *,
    base_model: str | Path | None = None,
    on_step_end: Callable[[int, dict], None] | None = None,
    **create_kwargs,
) -> Path:
    """Run SFT on ``data`` (a JSONL path or loaded examples) from ``base`` (a TWN checkpoint
    or a plain backbone, see ``load_for_training``; ``create_kwargs`` go to
    ``TWNModel.create``). Writes the released layout to ``args.output_dir``, checkpoints,
    and ``sft_log.jsonl``/``.csv``; returns the output folder."""
    examples = load_examples(data) if isinstance(data, (str, Path)) else list(data)
    if not any(e.query_thought or e.positive_thought for e in examples):
        logger.warning("no reference thoughts in the data: the reasoning adapter is not trained")
    device, dtype, autocast = resolve_training_device(args)
    embedder = load_for_training(base, device=device, dtype=dtype, base_model=base_model, **create_kwargs)
    loop = TrainingLoop("sft", embedder.model, args, SFT_PARTS, args.total_steps(len(examples)), autocast)
    loop.run(sft_step(embedder, examples, args, loop), on_step_end)
    embedder.model.save(args.output_dir)
    logger.info("SFT done: %s", args.output_dir)
    return Path(args.output_dir)


def sft_step(
    embedder: TWNEmbedder, examples: Sequence[RetrievalExample], args: SFTArguments, loop: TrainingLoop
) -> Callable[[int, int], dict[str, float]]:
    """The micro-step of SFT for ``TrainingLoop.run``: both losses, each backpropagated
    while its adapter is active."""
    model = embedder.model
    scale = 1.0 / args.grad_accum

    def step(step_index: int, micro: int) -> dict[str, float]:
        batch = [examples[i] for i in loop.micro_batch(step_index, micro, len(examples))]
        metrics: dict[str, float] = {}
        with model.use_adapter(REASONING_ADAPTER):
            with loop.autocast():
                thought_loss = reasoning_loss(embedder, batch)
            if thought_loss is not None:
                (thought_loss * args.reasoning_weight * scale).backward()
                metrics["reasoning_loss"] = thought_loss.item()
        with loop.autocast():
            contrastive, view_metrics = embedding_loss(embedder, batch, args.temperature)
        (contrastive * args.embedding_weight * scale).backward()
        metrics["embedding_loss"] = contrastive.item()
        metrics.update(view_metrics)
        return metrics

    return step
