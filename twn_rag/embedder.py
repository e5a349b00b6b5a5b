"""``TWNEmbedder``: the public facade that loads a TWN and encodes inputs under a budget."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm
from transformers import BatchFeature

from twn_rag.batching import DEFAULT_MAX_BATCH_TOKENS, token_budget_batches
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
# ``max_input_tokens=FROM_CONFIG``: the checkpoint's cap, ``TWNConfig.max_input_tokens``.
FROM_CONFIG = "config"
InputTokenCap = int | None | Literal["config"]

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_TOKENS",
    "FROM_CONFIG",
    "EmbeddingResult",
    "EmbeddingResults",
    "TWNEmbedder",
    "resolve_checkpoint",
]


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

    def default_budget(self, role: Role = "query") -> ReasoningBudget:
        """Adaptive at the checkpoint's gate threshold for ``role`` and its thought length, with no caps."""
        return ReasoningBudget(
            mode="adaptive",
            threshold=self.config.threshold(role),
            max_thought_tokens=self.config.max_thought_tokens,
        )

    # -- encoding -----------------------------------------------------------------------------
    def input_token_cap(self, max_input_tokens: InputTokenCap = FROM_CONFIG) -> int | None:
        """The cap on an input's text tokens that ``max_input_tokens`` stands for: a number as
        is, ``None`` for no cap, ``"config"`` for the checkpoint's (``TWNConfig.max_input_tokens``)."""
        cap = self.config.max_input_tokens if max_input_tokens == FROM_CONFIG else max_input_tokens
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            raise ValueError(f"max_input_tokens must be an int >= 1, None or {FROM_CONFIG!r}, got {max_input_tokens!r}")
        return cap

    def check_limits(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_input_tokens: InputTokenCap = FROM_CONFIG,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        """Raise ``ValueError`` naming the first of ``encode``'s limits that is out of range."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.input_token_cap(max_input_tokens)
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1 or None, got {max_batch_tokens}")

    def prepare(
        self,
        inputs: Sequence[Any],
        names: Sequence[str] | None = None,
        max_input_tokens: InputTokenCap = FROM_CONFIG,
    ) -> list[EmbeddingInput]:
        """Validate and load every input; the first bad one raises ``InvalidInputError`` naming
        it by ``names[i]`` (e.g. a node id) or, without names, by a description of it. A text
        longer than ``max_input_tokens`` tokens (see ``input_token_cap``) is cut on a token
        boundary and the item records its length before the cut (``text_tokens_original``)."""
        return self._capped(self._parse(inputs, names), self.input_token_cap(max_input_tokens), names)

    def _parse(self, inputs: Sequence[Any], names: Sequence[str] | None) -> list[EmbeddingInput]:
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

    def _capped(
        self, items: list[EmbeddingInput], cap: int | None, names: Sequence[str] | None
    ) -> list[EmbeddingInput]:
        """``items`` with each text cut to ``cap`` tokens (``None``: as they are), each cut logged."""
        if cap is None:
            return items
        capped = [self.processor.truncated(item, cap) for item in items]
        for index, (item, cut) in enumerate(zip(items, capped)):
            if cut is not item:
                name = f" ({names[index]})" if names is not None else ""
                logger.info("input %d%s: text of %d tokens cut to %d", index, name, cut.text_tokens_original, cap)
        return capped

    def plan_batches(
        self,
        items: Sequence[EmbeddingInput],
        role: Role,
        budget: ReasoningBudget,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
        instruction: str | None = None,
    ) -> list[list[int]]:
        """The batches ``encode`` embeds ``items`` in, as lists of positions: by their rows'
        token counts (images and video as the processor expands them, query slots included;
        counted without preprocessing a pixel), shortest first, at most ``batch_size`` rows
        and ``max_batch_tokens`` padded positions (rows x longest row) each; an input longer
        than that alone goes alone. Where ``budget`` may think, every row is counted with
        ``max_thought_tokens`` more, the room its thought takes in the passes that follow."""
        lengths = self.processor.embedding_row_lengths(items, self.prompts(items, role, instruction)[0])
        if budget.mode != "never":
            lengths = [length + budget.max_thought_tokens for length in lengths]
        return token_budget_batches(lengths, batch_size, max_batch_tokens)

    def encode_query(
        self, inputs: Sequence[Any] | Any, budget: ReasoningBudget | None = None, **options: Any
    ) -> EmbeddingResults:
        """``encode`` in the query role (its instruction and reasoning prompt); ``options`` are
        ``encode``'s ``batch_size``, ``show_progress``, ``instruction``, ``names``,
        ``max_input_tokens`` and ``max_batch_tokens``."""
        return self.encode(inputs, "query", budget, **options)

    def encode_document(
        self, inputs: Sequence[Any] | Any, budget: ReasoningBudget | None = None, **options: Any
    ) -> EmbeddingResults:
        """``encode`` in the document role (its instruction and reasoning prompt); ``options``
        are ``encode``'s ``batch_size``, ``show_progress``, ``instruction``, ``names``,
        ``max_input_tokens`` and ``max_batch_tokens``."""
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
        max_input_tokens: InputTokenCap = FROM_CONFIG,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    ) -> EmbeddingResults:
        """Embed ``inputs`` (strings, PIL images, or dicts; see ``twn_rag.inputs``) in ``role``
        (``"query"`` unless told; ``encode_query`` / ``encode_document`` name it).

        Each batch gets one no-think pass that yields the vectors and gate scores; the inputs
        the ``budget`` selects think together in one ``generate`` call and are embedded again
        with their thoughts. ``budget`` (its ledger updated in place) defaults to
        ``default_budget(role)``. ``instruction`` overrides the role's instruction for all inputs
        (a dict's own ``instruction`` wins). A bad input raises ``InvalidInputError`` before any
        work, named by ``names[i]`` when given. Returns one ``EmbeddingResult`` per input, in
        order, as ``EmbeddingResults`` (also the ``[N, D]`` array ``.vectors``).

        ``max_input_tokens`` caps each input's text (``"config"``: the checkpoint's cap, 2,048
        unless its ``twn_config.json`` says otherwise; ``None``: no cap); a result whose text
        was cut says so (``text_truncated``, ``text_tokens_original``). Batches hold inputs of
        similar length, at most ``batch_size`` of them and ``max_batch_tokens`` padded positions
        (``None``: no token limit); see ``plan_batches``. Neither changes the vector of an input
        that fits.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.check_limits(batch_size, max_input_tokens, max_batch_tokens)
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            inputs = [inputs]
        items = self._parse(inputs, names)  # outside the lock: reading files can take a while
        budget = budget if budget is not None else self.default_budget(role)
        # Results go back to input order.
        results: list[EmbeddingResult | None] = [None] * len(items)
        with self._encode_lock, torch.inference_mode():
            # Under the lock: a fast tokenizer must not be called while another call pads with it.
            items = self._capped(items, self.input_token_cap(max_input_tokens), names)
            chunks = self.plan_batches(items, role, budget, batch_size, max_batch_tokens, instruction)
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
        max_input_tokens: InputTokenCap = FROM_CONFIG,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    ) -> EmbeddingResults:
        """Think about every input and embed it with its thought: the second half of ``encode``
        for inputs already selected (their no-think pass gave ``gate_scores``, which the results
        carry). Thoughts of up to ``max_thought_tokens`` are generated batch by batch in one
        ``generate`` call each, in the batches ``encode`` would form (``max_input_tokens`` and
        ``max_batch_tokens`` as there). No budget is consulted or updated: the caller selected
        and accounts."""
        if len(gate_scores) != len(inputs):
            raise ValueError(f"got {len(gate_scores)} gate scores for {len(inputs)} inputs")
        self.check_limits(batch_size, max_input_tokens, max_batch_tokens)
        items = self._parse(inputs, None)
        # Planning only: every row thinks, so each is counted with the room its thought takes.
        thinking = ReasoningBudget(mode="always", max_thought_tokens=max_thought_tokens)
        results: list[EmbeddingResult | None] = [None] * len(items)
        with self._encode_lock, torch.inference_mode():
            items = self._capped(items, self.input_token_cap(max_input_tokens), None)
            for chunk in self.plan_batches(items, role, thinking, batch_size, max_batch_tokens):
                batch = [items[i] for i in chunk]
                thoughts = self._think(batch, role, None, max_thought_tokens)
                vectors, _ = self.embed_items(batch, role, [text for text, _ in thoughts])
                array = vectors.cpu().numpy().astype(np.float32, copy=False)
                for row, (i, (text, count)) in enumerate(zip(chunk, thoughts)):
                    original = items[i].text_tokens_original
                    results[i] = EmbeddingResult(array[row], text, count, float(gate_scores[i]), original)
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
        return [
            EmbeddingResult(array[i], thoughts[i], tokens[i], float(scores[i]), items[i].text_tokens_original)
            for i in range(len(items))
        ]

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
