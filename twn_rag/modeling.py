"""The dual-LoRA TWN model: one frozen multimodal backbone carrying the ``reasoning`` and
``embedding`` LoRA adapters, K learnable query vectors and the gate MLP.

Released checkpoint layout (read by ``load``, written by ``save``)::

    reasoning/  embedding/  gate_mlp.pt  queries.pt  twn_config.json (optional)
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from twn_rag.config import TWNConfig
from twn_rag.gate import GateMLP

logger = logging.getLogger(__name__)

REASONING_ADAPTER = "reasoning"
EMBEDDING_ADAPTER = "embedding"
# An adapter's weights in its folder of the released layout (peft's file name).
ADAPTER_WEIGHTS_FILENAME = "adapter_model.safetensors"
GATE_FILENAME = "gate_mlp.pt"
QUERIES_FILENAME = "queries.pt"
QUERIES_PART = "queries"
GATE_PART = "gate"
SUPPORTED_MODEL_TYPES = ("qwen3_vl", "qwen2_vl", "qwen2_5_vl")
# LoRA targets: the language model's projections only, never the vision tower.
LORA_TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@contextmanager
def _quiet_peft_deprecations() -> Iterator[None]:
    """peft reads ``is_gradient_checkpointing``, which transformers 5 deprecates; the warning
    says nothing to our users, so it is silenced while peft wraps the backbone."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


class UnsupportedArchitectureError(ValueError):
    """The backbone is not one of the multimodal families TWN supports."""


class CheckpointError(ValueError):
    """A TWN checkpoint is missing a file or holds something unexpected."""


def check_architecture(base_model: str | Path, trust_remote_code: bool = False) -> str:
    """Return the backbone's ``model_type`` or raise ``UnsupportedArchitectureError``."""
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(str(base_model), trust_remote_code=trust_remote_code).model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"backbone {base_model} has model_type {model_type!r}; TWN supports {list(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type


def load_backbone(base_model: str | Path, dtype: torch.dtype, device: torch.device, trust_remote_code: bool = False):
    """Load the multimodal backbone (architecture checked first) in eval mode on ``device``."""
    from transformers import AutoModelForImageTextToText

    check_architecture(base_model, trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(
        str(base_model), dtype=dtype, trust_remote_code=trust_remote_code
    )
    return model.to(device).eval()


def resolve_base_model(checkpoint_dir: str | Path) -> str:
    """The backbone a checkpoint names in ``embedding/adapter_config.json``. A relative name
    that is a folder inside the checkpoint (one that ships its backbone, like the bundled
    demo model) resolves there; anything else (a hub id, an absolute path) is returned as is."""
    checkpoint_dir = Path(checkpoint_dir)
    config_path = checkpoint_dir / EMBEDDING_ADAPTER / "adapter_config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{checkpoint_dir} has no {EMBEDDING_ADAPTER}/adapter_config.json (not a TWN checkpoint)")
    base_model = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base_model:
        raise CheckpointError(f"{checkpoint_dir}: adapter_config.json names no base model; pass base_model=")
    inside = checkpoint_dir / base_model
    return str(inside) if not Path(base_model).is_absolute() and inside.is_dir() else str(base_model)


def load_tensor_file(path: Path) -> dict | torch.Tensor:
    """``torch.load`` with ``weights_only=True``: a pickle may only hold tensors and containers."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def adapter_of_parameter(name: str) -> str | None:
    """The adapter a backbone parameter belongs to (``...lora_A.reasoning.weight`` ->
    ``"reasoning"``), or ``None`` for a backbone weight."""
    if ".lora_" not in name:
        return None
    return name.split(".lora_", 1)[1].split(".")[1]


class TWNModel(nn.Module):
    """Backbone (a peft ``PeftModel`` with both adapters), queries ``[K, hidden]`` and gate."""

    def __init__(self, backbone, queries: torch.Tensor, gate: GateMLP, config: TWNConfig):
        super().__init__()
        adapters = set(backbone.peft_config)
        if adapters != {REASONING_ADAPTER, EMBEDDING_ADAPTER}:
            raise CheckpointError(f"expected adapters {{'reasoning', 'embedding'}}, got {sorted(adapters)}")
        if queries.dim() == 3:
            queries = queries.squeeze(0)
        hidden = backbone.get_input_embeddings().embedding_dim
        if queries.dim() != 2 or queries.shape[1] != hidden:
            raise CheckpointError(f"queries must be [K, {hidden}] (or [1, K, {hidden}]), got {list(queries.shape)}")
        if gate.dims[0] != hidden:
            raise CheckpointError(f"gate input size {gate.dims[0]} does not match hidden size {hidden}")
        self.backbone = backbone
        device = backbone.get_input_embeddings().weight.device
        self.queries = nn.Parameter(queries.detach().float().to(device))
        self.gate = gate.float().to(device)
        self.config = config
        self._trainable: frozenset[str] | None = None  # None: leave peft's requires_grad as is

    # -- properties -------------------------------------------------------------------
    @property
    def num_queries(self) -> int:
        return self.queries.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.queries.shape[1]

    @property
    def device(self) -> torch.device:
        return self.queries.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.get_input_embeddings().weight.dtype

    def _inner_model(self) -> nn.Module:
        """The backbone without its LM head (returns hidden states); LoRA layers included."""
        return self.backbone.get_base_model().model

    # -- adapters ---------------------------------------------------------------------
    @contextmanager
    def use_adapter(self, name: str) -> Iterator[None]:
        """Activate one adapter for the duration of the block (one backbone, switched); the
        adapter active before is restored after it."""
        previous = self.backbone.active_adapter
        self._activate(name)
        try:
            yield
        finally:
            self._activate(previous)

    def _activate(self, name: str) -> None:
        if self.backbone.active_adapter == name:
            return
        self.backbone.set_adapter(name)
        if self._trainable is not None:  # peft's set_adapter flips requires_grad; keep our choice
            self._apply_trainable()

    # -- training helpers ---------------------------------------------------------------
    def set_trainable(self, parts: Iterable[str]) -> list[nn.Parameter]:
        """Train exactly ``parts`` (adapter names, ``"queries"``, ``"gate"``) and freeze the
        rest, the backbone included. The choice holds across adapter switches. Returns the
        trainable parameters in a fixed order (for the optimizer)."""
        parts = frozenset(parts)
        known = set(self.backbone.peft_config) | {QUERIES_PART, GATE_PART}
        if not parts <= known:
            raise ValueError(f"unknown trainable parts {sorted(parts - known)}; known: {sorted(known)}")
        self._trainable = parts
        self._apply_trainable()
        return [p for p in self.parameters() if p.requires_grad]

    def _apply_trainable(self) -> None:
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(adapter_of_parameter(name) in self._trainable)
        self.queries.requires_grad_(QUERIES_PART in self._trainable)
        for param in self.gate.parameters():
            param.requires_grad_(GATE_PART in self._trainable)

    def adapter_parameters(self, adapter: str) -> dict[str, nn.Parameter]:
        """The LoRA parameters of one adapter, by name."""
        return {n: p for n, p in self.backbone.named_parameters() if adapter_of_parameter(n) == adapter}

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the backbone's activations in the backward pass (less memory, more time).
        Losses must be backpropagated while the adapter that produced them is active."""
        self.backbone.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )

    def add_frozen_copy(self, adapter: str, copy_name: str) -> None:
        """Add ``copy_name`` as a third adapter on the same backbone holding the current weights
        of ``adapter`` (e.g. a frozen reference for a KL term). ``save`` never writes it."""
        import copy

        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        active = self.backbone.active_adapter
        self.backbone.add_adapter(copy_name, copy.deepcopy(self.backbone.peft_config[adapter]))
        state = get_peft_model_state_dict(self.backbone, adapter_name=adapter)
        set_peft_model_state_dict(self.backbone, state, adapter_name=copy_name)
        self.backbone.set_adapter(active)
        if self._trainable is not None:
            self._apply_trainable()  # the copy is not among the trainable parts: frozen
        else:
            for param in self.adapter_parameters(copy_name).values():
                param.requires_grad_(False)

    def load_weights(self, checkpoint_dir: str | Path) -> None:
        """Load adapters, queries and gate from a checkpoint in the released layout into this
        model (same backbone, same shapes), e.g. to resume training without reloading."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        checkpoint_dir = Path(checkpoint_dir)
        for adapter in (REASONING_ADAPTER, EMBEDDING_ADAPTER):
            path = checkpoint_dir / adapter / ADAPTER_WEIGHTS_FILENAME
            if not path.is_file():
                raise CheckpointError(f"checkpoint file missing: {path}")
            result = set_peft_model_state_dict(self.backbone, load_file(str(path)), adapter_name=adapter)
            if result.unexpected_keys:
                raise CheckpointError(f"{path} holds unexpected keys {result.unexpected_keys[:3]}")
        queries = load_tensor_file(checkpoint_dir / QUERIES_FILENAME)
        with torch.no_grad():
            self.queries.copy_(queries.reshape(self.queries.shape))
        gate = GateMLP.from_state_dict(load_tensor_file(checkpoint_dir / GATE_FILENAME), self.config.gate_activation)
        self.gate.load_state_dict(gate.state_dict())

    @contextmanager
    def _queries_in_last_slots(self) -> Iterator[None]:
        """Replace the input embeddings of the last K positions by the learnable queries.

        A hook on the input embedding rather than ``inputs_embeds``: the model still gets
        ``input_ids``, which it needs to place image/video features and compute mRoPE positions."""
        k = self.num_queries

        def hook(module, args, output):
            queries = self.queries.to(output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1)
            return torch.cat([output[:, :-k], queries], dim=1)

        handle = self.backbone.get_input_embeddings().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # -- passes -----------------------------------------------------------------------
    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding pass over a batch built by ``TWNProcessor.embedding_batch``.

        Returns ``(vectors, pooled)``: L2-normalised float32 vectors ``[B, hidden]`` and the
        pooled (mean over the K query positions) hidden states the gate reads.
        """
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with self.use_adapter(EMBEDDING_ADAPTER), self._queries_in_last_slots():
            hidden = self._inner_model()(**batch).last_hidden_state
        pooled = hidden[:, -self.num_queries :].float().mean(dim=1)
        return F.normalize(pooled, dim=-1), pooled

    def gate_scores(self, pooled: torch.Tensor) -> torch.Tensor:
        """p(thinking helps) for each pooled state, ``[B]`` in 0..1."""
        return self.gate(pooled.float())

    def thought_log_probs(
        self, batch: dict, labels: torch.Tensor, adapter: str = REASONING_ADAPTER, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of the labelled (thought) tokens of a ``TWNProcessor.reasoning_batch``
        under ``adapter``, with logits divided by ``temperature``.

        Returns ``(log_probs, mask)``, both ``[B, T]`` for the last ``T`` positions (the thought
        columns); ``log_probs`` is 0 where ``mask`` is False. Logits are computed only for those
        columns, so a large vocabulary costs ``B x T x V``, not ``B x L x V``.
        """
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        labels = labels.to(self.device)
        labelled = (labels != -100).any(dim=0).nonzero()
        if labelled.numel() == 0:
            raise ValueError("no labelled thought tokens in the batch")
        width = labels.shape[1] - int(labelled[0])
        with self.use_adapter(adapter):
            logits = self.backbone(**batch, logits_to_keep=width + 1, use_cache=False).logits
        logits = logits[:, :width].float() / temperature
        targets = labels[:, -width:]
        mask = targets != -100
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return log_probs * mask, mask

    def generate_thoughts(self, batch: dict, max_new_tokens: int, **generate_kwargs) -> torch.Tensor:
        """One batched ``generate`` call with the reasoning adapter (greedy unless sampling
        kwargs say otherwise). Returns only the new token ids ``[B, <= max_new_tokens]``."""
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        generate_kwargs.setdefault("do_sample", False)
        with self.use_adapter(REASONING_ADAPTER):
            output = self.backbone.generate(**batch, max_new_tokens=max_new_tokens, **generate_kwargs)
        return output[:, batch["input_ids"].shape[1] :]

    # -- construction, load and save ---------------------------------------------------
    @classmethod
    def create(
        cls,
        backbone,
        config: TWNConfig | None = None,
        *,
        num_queries: int = 16,
        lora_rank: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        gate_hidden: int = 256,
        target_modules: str | list[str] = LORA_TARGET_MODULES,
        init_lora_weights: bool = True,
        seed: int = 0,
    ) -> TWNModel:
        """A fresh TWN on a loaded backbone: new LoRA adapters, random queries and gate.

        ``init_lora_weights=False`` gives random (non-identity) adapters, useful in tests.
        """
        from peft import LoraConfig, get_peft_model

        config = config or TWNConfig()
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        lora = LoraConfig(
            r=lora_rank,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=target_modules,
            init_lora_weights=init_lora_weights,
        )
        with _quiet_peft_deprecations():
            peft_model = get_peft_model(backbone, lora, adapter_name=REASONING_ADAPTER)
        peft_model.add_adapter(EMBEDDING_ADAPTER, lora)
        peft_model.set_adapter(EMBEDDING_ADAPTER)
        hidden = backbone.get_input_embeddings().embedding_dim
        queries = (
            torch.randn(num_queries, hidden, generator=generator)
            * backbone.get_input_embeddings().weight.float().std().item()
        )
        gate = GateMLP([hidden, gate_hidden, 1], config.gate_activation)
        return cls(peft_model, queries, gate, config)

    @classmethod
    def load(
        cls,
        checkpoint_dir: str | Path,
        *,
        base_model: str | Path | None = None,
        device: torch.device,
        dtype: torch.dtype,
        trust_remote_code: bool = False,
    ) -> TWNModel:
        """Read the released layout from a local directory (see module docstring)."""
        from peft import PeftModel

        checkpoint_dir = Path(checkpoint_dir)
        for adapter in (REASONING_ADAPTER, EMBEDDING_ADAPTER):
            if not (checkpoint_dir / adapter / "adapter_config.json").is_file():
                raise CheckpointError(f"{checkpoint_dir} has no {adapter}/adapter_config.json (not a TWN checkpoint)")
        config = TWNConfig.load(checkpoint_dir)
        base_model = base_model if base_model is not None else resolve_base_model(checkpoint_dir)
        logger.info("loading backbone %s (%s on %s)", base_model, dtype, device)
        backbone = load_backbone(base_model, dtype, device, trust_remote_code)
        with _quiet_peft_deprecations():
            peft_model = PeftModel.from_pretrained(
                backbone, str(checkpoint_dir / REASONING_ADAPTER), adapter_name=REASONING_ADAPTER
            )
        peft_model.load_adapter(str(checkpoint_dir / EMBEDDING_ADAPTER), adapter_name=EMBEDDING_ADAPTER)
        peft_model.set_adapter(EMBEDDING_ADAPTER)
        peft_model.eval()
        queries = load_tensor_file(checkpoint_dir / QUERIES_FILENAME)
        if isinstance(queries, dict):  # a state dict holding one tensor
            if len(queries) != 1:
                raise CheckpointError(f"{QUERIES_FILENAME} must hold one tensor, found keys {sorted(queries)}")
            queries = next(iter(queries.values()))
        gate_state = load_tensor_file(checkpoint_dir / GATE_FILENAME)
        gate = GateMLP.from_state_dict(gate_state, config.gate_activation)
        return cls(peft_model, queries, gate, config)

    def save(self, output_dir: str | Path) -> Path:
        """Write the released layout to ``output_dir``."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(str(output_dir), selected_adapters=[REASONING_ADAPTER, EMBEDDING_ADAPTER])
        torch.save(self.gate.state_dict(), output_dir / GATE_FILENAME)
        torch.save(self.queries.detach().cpu().clone(), output_dir / QUERIES_FILENAME)
        self.config.save(output_dir)
        return output_dir
