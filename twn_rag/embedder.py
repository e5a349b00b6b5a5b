"""``TWNEmbedder``: the public facade that loads a TWN and encodes inputs under a budget."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import BatchFeature

from twn_rag.budget import ReasoningBudget
from twn_rag.cache import DEFAULT_THOUGHT_CACHE_SIZE, ThoughtCache
from twn_rag.config import ROLES, Role, TWNConfig
from twn_rag.device import resolve_device, resolve_dtype
from twn_rag.inputs import EmbeddingInput, parse_input
from twn_rag.modeling import TWNModel, resolve_base_model
from twn_rag.processing import TWNProcessor
from twn_rag.results import EmbeddingResult, EmbeddingResults

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8

__all__ = ["DEFAULT_BATCH_SIZE", "EmbeddingResult", "EmbeddingResults", "TWNEmbedder", "resolve_checkpoint"]


def resolve_checkpoint(path_or_hub_id: str | Path) -> Path:
    """A local checkpoint directory as is; otherwise a hub id downloaded (or read from the
    cache) with ``huggingface_hub``. Offline with nothing cached, the error says so."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(path_or_hub_id).count("/") != 1:
        raise FileNotFoundError(f"{path_or_hub_id} is neither a checkpoint directory nor a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path_or_hub_id)))
    except Exception as exc:  # network, auth, offline mode: one clear message
        raise FileNotFoundError(
            f"cannot fetch TWN checkpoint {path_or_hub_id!r} from the hub ({exc}); "
            "download it where there is network and pass the local directory"
        ) from exc


class TWNEmbedder:
    """Loads a TWN checkpoint and encodes text, images and video, thinking only where the
    gate and the budget allow. One backbone in memory; adapters are switched per pass."""

    def __init__(
        self,
        model: TWNModel,
        processor: TWNProcessor,
        model_id: str,
        thought_cache_size: int = DEFAULT_THOUGHT_CACHE_SIZE,
    ):
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.thought_cache = ThoughtCache(thought_cache_size)
        # One encode at a time: passes switch the shared backbone's adapter and update budgets.
        self._encode_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path,
        base_model: str | Path | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        *,
        trust_remote_code: bool = False,
        thought_cache_size: int = DEFAULT_THOUGHT_CACHE_SIZE,
    ) -> TWNEmbedder:
        """Load a TWN checkpoint in the released layout.

        ``base_model`` overrides the backbone named in ``adapter_config.json`` (a local path
        for machines without hub access). ``device``: ``"auto"`` = cuda, mps, cpu.
        ``dtype``: ``"auto"`` = bf16 on cuda and bf16-capable CPUs, else fp32.
        """
        from transformers import AutoProcessor

        checkpoint = resolve_checkpoint(path_or_hub_id)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        base_model = str(base_model) if base_model is not None else resolve_base_model(checkpoint)
        model = TWNModel.load(
            checkpoint,
            base_model=base_model,
            device=torch_device,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
        )
        hf_processor = AutoProcessor.from_pretrained(base_model, trust_remote_code=trust_remote_code)
        processor = TWNProcessor(hf_processor, model.num_queries)
        return cls(model, processor, str(path_or_hub_id), thought_cache_size)

    def save_pretrained(self, output_dir: str | Path) -> Path:
        """Write the released layout (adapters, gate, queries, config) to ``output_dir``."""
        return self.model.save(output_dir)

    # -- properties ---------------------------------------------------------------------------
    @property
    def config(self) -> TWNConfig:
        return self.model.config

    @property
    def dimension(self) -> int:
        return self.model.hidden_size

    def default_budget(self) -> ReasoningBudget:
        """Adaptive at the checkpoint's gate threshold and thought length, with no caps."""
        return ReasoningBudget(
            mode="adaptive",
            threshold=self.config.gate_threshold,
            max_thought_tokens=self.config.max_thought_tokens,
        )

    # -- encoding -----------------------------------------------------------------------------
    def prepare(self, inputs: Sequence[Any], names: Sequence[str] | None = None) -> list[EmbeddingInput]:
        """Validate and load every input; the first bad one raises ``InvalidInputError`` naming
        it by ``names[i]`` (e.g. a node id) or, without names, by a description of it."""
        if names is not None and len(names) != len(inputs):
            raise ValueError(f"got {len(names)} names for {len(inputs)} inputs")
        cfg = self.config
        return [
            parse_input(
                item,
                index,
                max_image_pixels=cfg.max_image_pixels,
                video_fps=cfg.video_fps,
                max_video_frames=cfg.max_video_frames,
                name=names[index] if names is not None else None,
            )
            for index, item in enumerate(inputs)
        ]

    def encode_query(
        self, inputs: Sequence[Any] | Any, budget: ReasoningBudget | None = None, **options: Any
    ) -> EmbeddingResults:
        """``encode`` in the query role (its instruction and reasoning prompt); ``options`` are
        ``encode``'s ``batch_size``, ``show_progress``, ``instruction`` and ``names``."""
        return self.encode(inputs, "query", budget, **options)

    def encode_document(
        self, inputs: Sequence[Any] | Any, budget: ReasoningBudget | None = None, **options: Any
    ) -> EmbeddingResults:
        """``encode`` in the document role (its instruction and reasoning prompt); ``options``
        are ``encode``'s ``batch_size``, ``show_progress``, ``instruction`` and ``names``."""
        return self.encode(inputs, "document", budget, **options)

    def encode(
        self,
        inputs: Sequence[Any] | Any,
        role: Role = "query",
        budget: ReasoningBudget | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress: bool = False,
        instruction: str | None = None,
        names: Sequence[str] | None = None,
    ) -> EmbeddingResults:
        """Embed ``inputs`` (strings, PIL images, or dicts; see ``twn_rag.inputs``) in ``role``
        (``"query"`` unless told; ``encode_query`` / ``encode_document`` name it).

        Each batch gets one no-think pass that yields the vectors and gate scores; the inputs
        the ``budget`` selects think together in one ``generate`` call and are embedded again
        with their thoughts. ``budget`` (its ledger updated in place) defaults to
        ``default_budget()``. ``instruction`` overrides the role's instruction for all inputs
        (a dict's own ``instruction`` wins). A bad input raises ``InvalidInputError`` before any
        work, named by ``names[i]`` when given. Returns one ``EmbeddingResult`` per input, in
        order, as ``EmbeddingResults`` (also the ``[N, D]`` array ``.vectors``).
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            inputs = [inputs]
        items = self.prepare(inputs, names)
        budget = budget if budget is not None else self.default_budget()
        # Similar sizes together: less padding. Results go back to input order.
        order = sorted(range(len(items)), key=lambda i: items[i].cost())
        results: list[EmbeddingResult | None] = [None] * len(items)
        chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        with self._encode_lock, torch.inference_mode():
            for chunk in tqdm(chunks, desc="twn encode", unit="batch", disable=not show_progress):
                batch_items = [items[i] for i in chunk]
                for i, result in zip(chunk, self._encode_batch(batch_items, role, budget, instruction)):
                    results[i] = result
        return EmbeddingResults(results, self.dimension)  # type: ignore[arg-type]

    def encode_with_thoughts(
        self,
        inputs: Sequence[Any],
        role: Role,
        gate_scores: Sequence[float],
        max_thought_tokens: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> EmbeddingResults:
        """Think about every input and embed it with its thought: the second half of ``encode``
        for inputs already selected (their no-think pass gave ``gate_scores``, which the results
        carry). Thoughts of up to ``max_thought_tokens`` are generated batch by batch in one
        ``generate`` call each. No budget is consulted or updated: the caller selected and accounts."""
        if len(gate_scores) != len(inputs):
            raise ValueError(f"got {len(gate_scores)} gate scores for {len(inputs)} inputs")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = self.prepare(inputs)
        order = sorted(range(len(items)), key=lambda i: items[i].cost())
        results: list[EmbeddingResult | None] = [None] * len(items)
        with self._encode_lock, torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = [items[i] for i in chunk]
                thoughts = self._think(batch, role, None, max_thought_tokens)
                vectors, _ = self.embed_items(batch, role, [text for text, _ in thoughts])
                array = vectors.cpu().numpy().astype(np.float32, copy=False)
                for row, (i, (text, count)) in enumerate(zip(chunk, thoughts)):
                    results[i] = EmbeddingResult(array[row], text, count, float(gate_scores[i]))
        return EmbeddingResults(results, self.dimension)  # type: ignore[arg-type]

    # -- the passes, one definition for encoding and training --------------------------------
    def prompts(
        self, items: Sequence[EmbeddingInput], role: Role | Sequence[Role], instruction: str | None = None
    ) -> tuple[list[str], list[str]]:
        """``(embedding instructions, reasoning prompts)``, one per item, for ``role`` (one role,
        or one per item). An item's own instruction wins over ``instruction``, which wins over
        the role's default (see ``TWNConfig.prompts``)."""
        roles = [role] * len(items) if isinstance(role, str) else list(role)
        if len(roles) != len(items):
            raise ValueError(f"got {len(roles)} roles for {len(items)} items")
        pairs = [self.config.prompts(r, item.instruction or instruction) for r, item in zip(roles, items)]
        return [embed for embed, _ in pairs], [reason for _, reason in pairs]

    def embed_items(
        self,
        items: Sequence[EmbeddingInput],
        role: Role | Sequence[Role],
        thoughts: Sequence[str | None] | None = None,
        instruction: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding pass over ``items`` (``thoughts[i]``, where given, as the assistant turn):
        ``(vectors, pooled)`` as ``TWNModel.embed`` returns them. Gradients flow, so training
        calls it as it is; inference wraps it in ``torch.inference_mode``. Unlike ``encode``
        it takes no lock: do not call it while another thread encodes with the same model."""
        instructions, _ = self.prompts(items, role, instruction)
        thoughts = list(thoughts) if thoughts is not None else [None] * len(items)
        return self.model.embed(self.processor.embedding_batch(items, instructions, thoughts))

    def generation_batch(
        self, items: Sequence[EmbeddingInput], role: Role | Sequence[Role], instruction: str | None = None
    ) -> BatchFeature:
        """The reasoning adapter's input for ``items``: their chat with the reasoning prompt,
        ending with the generation prompt (for ``TWNModel.generate_thoughts``)."""
        return self.processor.generation_batch(items, self.prompts(items, role, instruction)[1])

    def reasoning_batch(
        self,
        items: Sequence[EmbeddingInput],
        role: Role | Sequence[Role],
        thought_ids: Sequence[Sequence[int]],
        instruction: str | None = None,
    ) -> tuple[BatchFeature, torch.Tensor]:
        """``generation_batch`` followed by each item's thought tokens, and their labels (see
        ``TWNProcessor.reasoning_batch``), for ``TWNModel.thought_log_probs``."""
        return self.processor.reasoning_batch(items, self.prompts(items, role, instruction)[1], thought_ids)

    def _encode_batch(
        self, items: list[EmbeddingInput], role: Role, budget: ReasoningBudget, instruction: str | None
    ) -> list[EmbeddingResult]:
        vectors, pooled = self.embed_items(items, role, instruction=instruction)
        scores = self.model.gate_scores(pooled).tolist()
        chosen = budget.select(scores)
        thoughts: list[str | None] = [None] * len(items)
        tokens = [0] * len(items)
        if chosen:
            picked = [items[i] for i in chosen]
            for i, (text, count) in zip(chosen, self._think(picked, role, instruction, budget.max_thought_tokens)):
                thoughts[i], tokens[i] = text, count
            budget.record([tokens[i] for i in chosen])
            thought_vectors, _ = self.embed_items(picked, role, [thoughts[i] for i in chosen], instruction)
            vectors = vectors.clone()
            vectors[chosen] = thought_vectors
        array = vectors.cpu().numpy().astype(np.float32, copy=False)
        return [EmbeddingResult(array[i], thoughts[i], tokens[i], float(scores[i])) for i in range(len(items))]

    def _think(
        self, items: list[EmbeddingInput], role: Role, instruction: str | None, max_tokens: int
    ) -> list[tuple[str, int]]:
        """Thoughts for ``items``: cached ones reused, the rest generated in one batched call."""
        _, prompts = self.prompts(items, role, instruction)
        keys = [
            self.thought_cache.key(self.model_id, p, max_tokens, it.content_hash()) for it, p in zip(items, prompts)
        ]
        found = [self.thought_cache.get(k) for k in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            batch = self.generation_batch([items[i] for i in missing], role, instruction)
            generated = self.model.generate_thoughts(
                batch, max_new_tokens=max_tokens, pad_token_id=self.processor.pad_token_id
            )
            texts, counts = self.processor.decode_thoughts(generated)
            for i, text, count in zip(missing, texts, counts):
                found[i] = (text, count)
                self.thought_cache.put(keys[i], text, count)
        return found  # type: ignore[return-value]

    # -- pickling ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but the encode lock, which cannot be pickled (a copy gets its own)."""
        state = self.__dict__.copy()
        del state["_encode_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._encode_lock = threading.Lock()
