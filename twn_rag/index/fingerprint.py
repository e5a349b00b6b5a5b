"""Which model made an index's vectors: one digest per component that decides the vector space,
so that a refusal can say what differs.

Components (SHA-256 digests, independent of where the files are stored and of the dtype the
backbone was loaded in):

- ``backbone``: every backbone tensor's shape and a fixed sample of its values;
- ``embedding_adapter``: every weight of the ``embedding`` LoRA adapter, and its scaling;
- ``queries``: the K learnable query vectors;
- ``instructions``: each role's embedding instruction (the system turn of the embedding pass).

Left out on purpose: the gate and the ``reasoning`` adapter. They decide which inputs think and
what they think, not where a vector lands: with or without a thought, an input is embedded by
the same function, so vectors made before and after ``twn-rag train gate`` or ``train rl`` are
comparable, and an index survives retraining them.

Cost against certainty, for the backbone: hashing all of a 4B backbone (8 GB in bf16) would add
seconds to every open; ``SAMPLES_PER_TENSOR`` evenly spaced values of each of its ~700 tensors
take milliseconds. Fine-tuning or replacing the backbone changes every sample; an edit confined
to a few values (say, a handful of embedding rows) can fall between the samples and go unseen.
The samples are rounded to bfloat16 so that one checkpoint loaded in float32 or in bfloat16
reads the same. Tensors are compared as a multiset of (shape, values), not by name, so that a
transformers release renaming modules does not turn every index's backbone into another one.
The embedding adapter (about 33 M parameters on the 4B, 0.07 s of SHA-256 on this CPU class) and
the queries are hashed whole, in float32.

Indexes written before these components (format 1) recorded a single digest of the queries and
the gate: ``ModelFingerprint.legacy`` holds it, and ``ModelFingerprint.of(embedder, [LEGACY])``
recomputes it for comparison.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from twn_rag.modeling import EMBEDDING_ADAPTER, adapter_of_parameter

if TYPE_CHECKING:
    from twn_rag.embedder import TWNEmbedder

SAMPLES_PER_TENSOR = 1024
DIGEST_CHARS = 32
LEGACY = "queries_and_gate"


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:DIGEST_CHARS]


def _whole(tensor: torch.Tensor) -> bytes:
    """The tensor's float32 values, as bytes."""
    return tensor.detach().float().cpu().contiguous().numpy().tobytes()


def _sampled(tensor: torch.Tensor) -> bytes:
    """``SAMPLES_PER_TENSOR`` evenly spaced values (all of a smaller tensor), rounded to bfloat16.
    Integer index arithmetic, so every device picks the same positions."""
    flat = tensor.detach().reshape(-1)
    count = flat.numel()
    if count > SAMPLES_PER_TENSOR:
        positions = torch.arange(SAMPLES_PER_TENSOR, device=flat.device) * (count - 1) // (SAMPLES_PER_TENSOR - 1)
        flat = flat[positions]
    return flat.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes()


def _tensor_multiset(tensors: Iterable[torch.Tensor], values: Callable[[torch.Tensor], bytes]) -> str:
    entries = sorted(_digest(f"{tuple(t.shape)}|".encode(), values(t)) for t in tensors)
    return _digest(*(entry.encode() for entry in entries))


def _backbone(embedder: TWNEmbedder) -> str:
    backbone = embedder.model.backbone
    tensors = [p for name, p in backbone.named_parameters() if adapter_of_parameter(name) is None]
    return _tensor_multiset(tensors, _sampled)


def _embedding_adapter(embedder: TWNEmbedder) -> str:
    config = embedder.model.backbone.peft_config[EMBEDDING_ADAPTER]
    scaling = {key: getattr(config, key, None) for key in ("r", "lora_alpha", "use_rslora", "use_dora")}
    scaling.update(rank_pattern=dict(config.rank_pattern or {}), alpha_pattern=dict(config.alpha_pattern or {}))
    weights = _tensor_multiset(embedder.model.adapter_parameters(EMBEDDING_ADAPTER).values(), _whole)
    return _digest(json.dumps(scaling, sort_keys=True).encode(), weights.encode())


def _queries(embedder: TWNEmbedder) -> str:
    queries = embedder.model.queries
    return _digest(f"{tuple(queries.shape)}|".encode(), _whole(queries))


def _instructions(embedder: TWNEmbedder) -> str:
    return _digest(json.dumps(embedder.config.instructions, sort_keys=True).encode())


def _queries_and_gate(embedder: TWNEmbedder) -> str:
    """The format-1 digest, exactly as twn-rag computed it then."""
    digest = hashlib.sha256()
    tensors = [("queries", embedder.model.queries), *sorted(embedder.model.gate.state_dict().items())]
    for name, tensor in tensors:
        data = tensor.detach().float().cpu().numpy()
        digest.update(f"{name}:{data.shape}|".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()[:DIGEST_CHARS]


COMPONENTS: dict[str, Callable[[TWNEmbedder], str]] = {
    "backbone": _backbone,
    "embedding_adapter": _embedding_adapter,
    "queries": _queries,
    "instructions": _instructions,
}
_COMPUTE = {**COMPONENTS, LEGACY: _queries_and_gate}
DESCRIPTIONS = {
    "backbone": "the backbone",
    "embedding_adapter": "the embedding adapter",
    "queries": "the learnable queries",
    "instructions": "the embedding instructions",
    LEGACY: "the queries-and-gate digest (all an older twn-rag recorded)",
}


@dataclass(frozen=True)
class ModelFingerprint:
    """A digest per component of what decides the vector space (see the module docstring)."""

    components: Mapping[str, str]

    @classmethod
    def of(cls, embedder: TWNEmbedder, names: Iterable[str] = COMPONENTS) -> ModelFingerprint:
        """The embedder's digests of the components ``names`` (default: all current ones)."""
        return cls({name: _COMPUTE[name](embedder) for name in names})

    @classmethod
    def legacy(cls, digest: str) -> ModelFingerprint:
        """The single digest (queries and gate) a format-1 index recorded."""
        return cls({LEGACY: digest})

    @property
    def is_legacy(self) -> bool:
        return LEGACY in self.components

    @property
    def digest(self) -> str:
        """One digest of all the components: it changes when any of them does."""
        return _digest(json.dumps(dict(self.components), sort_keys=True).encode())

    def differences(self, other: ModelFingerprint) -> list[str]:
        """What differs in ``other`` (compared over this fingerprint's components), described
        for a reader, e.g. ``["the embedding adapter"]``; empty when they match."""
        return [DESCRIPTIONS[name] for name, digest in self.components.items() if other.components.get(name) != digest]

    def to_json(self) -> str:
        return json.dumps(dict(self.components), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelFingerprint:
        """``ValueError`` unless ``text`` holds a digest for every current component."""
        components = json.loads(text)
        if not isinstance(components, dict) or set(components) != set(COMPONENTS):
            raise ValueError(f"model fingerprint must hold the components {sorted(COMPONENTS)}, got {text[:200]!r}")
        return cls({name: str(components[name]) for name in COMPONENTS})


def model_fingerprint(embedder: TWNEmbedder) -> str:
    """The embedder's one-string fingerprint (``ModelFingerprint.of(embedder).digest``)."""
    return ModelFingerprint.of(embedder).digest
