"""The dual-LoRA TWN model: one frozen multimodal backbone carrying the ``reasoning`` and
``embedding`` LoRA adapters, K learnable query vectors and the gate MLP.

Released checkpoint layout (read by ``load``, written by ``save``)::

    reasoning/  embedding/  gate_mlp.pt  queries.pt  twn_config.json (optional)
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
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
GATE_FILENAME = "gate_mlp.pt"
QUERIES_FILENAME = "queries.pt"
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


def load_tensor_file(path: Path) -> dict | torch.Tensor:
    """``torch.load`` with ``weights_only=True``: a pickle may only hold tensors and containers."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


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

    @property
    def base_model_name(self) -> str:
        return str(self.backbone.peft_config[EMBEDDING_ADAPTER].base_model_name_or_path)

    def _inner_model(self) -> nn.Module:
        """The backbone without its LM head (returns hidden states); LoRA layers included."""
        return self.backbone.base_model.model.model

    # -- adapters ---------------------------------------------------------------------
    @contextmanager
    def use_adapter(self, name: str) -> Iterator[None]:
        """Activate one adapter for the duration of the block (one backbone, switched).

        Switching is skipped when ``name`` is already active: peft's ``set_adapter`` walks
        every LoRA layer, a tenth of a small model's forward time."""
        previous = self.backbone.active_adapter
        if previous != name:
            self.backbone.set_adapter(name)
        try:
            yield
        finally:
            if previous != name:
                self.backbone.set_adapter(previous)

    @contextmanager
    def _queries_in_last_slots(self) -> Iterator[None]:
        """Replace the input embeddings of the last K positions by the learnable queries."""
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
        if base_model is None:
            adapter_config = json.loads((checkpoint_dir / EMBEDDING_ADAPTER / "adapter_config.json").read_text())
            base_model = adapter_config.get("base_model_name_or_path")
            if not base_model:
                raise CheckpointError(f"{checkpoint_dir}: adapter_config.json names no base model; pass base_model=")
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
