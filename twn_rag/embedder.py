"""``TWNEmbedder``: the public facade that loads a TWN and encodes inputs under a budget."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from twn_rag.budget import ReasoningBudget
from twn_rag.cache import DEFAULT_THOUGHT_CACHE_SIZE, ThoughtCache
from twn_rag.config import ROLES, TWNConfig
from twn_rag.device import resolve_device, resolve_dtype
from twn_rag.inputs import EmbeddingInput, parse_input
from twn_rag.modeling import TWNModel, resolve_base_model
from twn_rag.processing import TWNProcessor

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8


@dataclass
class EmbeddingResult:
    """One encoded input: its L2-normalised float32 vector, the thought it was embedded with
    (``None`` when it did not think), that thought's token count, and the gate's p(think)."""

    vector: np.ndarray
    thought: str | None
    thought_tokens: int
    gate_score: float

    @property
    def thought_used(self) -> bool:
        return self.thought is not None


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
    def prepare(self, inputs: Sequence[Any]) -> list[EmbeddingInput]:
        """Validate and load every input; the first bad one raises ``InvalidInputError``."""
        cfg = self.config
        return [
            parse_input(
                item,
                index,
                max_image_pixels=cfg.max_image_pixels,
                video_fps=cfg.video_fps,
                max_video_frames=cfg.max_video_frames,
            )
            for index, item in enumerate(inputs)
        ]

    def encode(
        self,
        inputs: Sequence[Any] | Any,
        role: str = "query",
        budget: ReasoningBudget | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress: bool = False,
        instruction: str | None = None,
    ) -> list[EmbeddingResult]:
        """Embed ``inputs`` (strings, PIL images, or dicts; see ``twn_rag.inputs``).

        Each batch gets one no-think pass that yields the vectors and gate scores; the inputs
        the ``budget`` selects think together in one ``generate`` call and are embedded again
        with their thoughts. ``budget`` (its ledger updated in place) defaults to
        ``default_budget()``. ``instruction`` overrides the role's instruction for all inputs
        (a dict's own ``instruction`` wins). Returns one ``EmbeddingResult`` per input, in order.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            inputs = [inputs]
        items = self.prepare(inputs)
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
        return results  # type: ignore[return-value]

    def _instructions(
        self, items: Sequence[EmbeddingInput], role: str, override: str | None
    ) -> tuple[list[str], list[str]]:
        """(embedding instruction, reasoning prompt) per item."""
        pairs = [self.config.prompts(role, item.instruction or override) for item in items]
        return [embed for embed, _ in pairs], [reason for _, reason in pairs]

    def _encode_batch(
        self, items: list[EmbeddingInput], role: str, budget: ReasoningBudget, override: str | None
    ) -> list[EmbeddingResult]:
        embed_instr, reason_instr = self._instructions(items, role, override)
        batch = self.processor.embedding_batch(items, embed_instr, [None] * len(items))
        vectors, pooled = self.model.embed(batch)
        scores = self.model.gate_scores(pooled).tolist()
        chosen = budget.select(scores)
        thoughts: list[str | None] = [None] * len(items)
        tokens = [0] * len(items)
        if chosen:
            for i, (text, count) in zip(
                chosen,
                self._think([items[i] for i in chosen], [reason_instr[i] for i in chosen], budget.max_thought_tokens),
            ):
                thoughts[i], tokens[i] = text, count
            budget.record([tokens[i] for i in chosen])
            rethought = self.processor.embedding_batch(
                [items[i] for i in chosen], [embed_instr[i] for i in chosen], [thoughts[i] for i in chosen]
            )
            thought_vectors, _ = self.model.embed(rethought)
            vectors = vectors.clone()
            vectors[chosen] = thought_vectors
        array = vectors.cpu().numpy().astype(np.float32, copy=False)
        return [EmbeddingResult(array[i], thoughts[i], tokens[i], float(scores[i])) for i in range(len(items))]

    def _think(self, items: list[EmbeddingInput], prompts: list[str], max_tokens: int) -> list[tuple[str, int]]:
        """Thoughts for ``items``: cached ones reused, the rest generated in one batched call."""
        keys = [
            self.thought_cache.key(self.model_id, p, max_tokens, it.content_hash()) for it, p in zip(items, prompts)
        ]
        found = [self.thought_cache.get(k) for k in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            batch = self.processor.generation_batch([items[i] for i in missing], [prompts[i] for i in missing])
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
