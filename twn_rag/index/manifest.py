"""What an index must remember about itself, kept in the Chroma collection's metadata:
the model id and vector dimension, the loader settings, and one ``ReasoningBudget`` (with its
ledger) per role. Chroma accepts only scalar collection metadata (a list value crashes its
core), so structured values are stored as JSON text."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twn_rag.budget import ReasoningBudget
from twn_rag.config import ROLES
from twn_rag.index.errors import IndexMismatchError
from twn_rag.loaders.settings import LoaderSettings

if TYPE_CHECKING:
    from twn_rag.embedder import TWNEmbedder

FORMAT_VERSION = 1
KEY_PREFIX = "twn_"
FORMAT_KEY = "twn_format"
MODEL_KEY = "twn_model_id"
FINGERPRINT_KEY = "twn_model_fingerprint"
DIMENSION_KEY = "twn_dimension"
LOADER_KEY = "twn_loader"


def budget_key(role: str) -> str:
    return f"twn_budget_{role}"


def canonical_model_id(model_id: str) -> str:
    """A local checkpoint directory as its absolute path (so ``./ckpt`` and ``/abs/ckpt``
    match); a hub id unchanged."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if path.is_dir() else model_id


def model_fingerprint(embedder: TWNEmbedder) -> str:
    """A digest of the model's learned queries and gate weights (kept in float32 whatever the
    backbone dtype): the same checkpoint gives the same fingerprint wherever it is stored, a
    retrained one another."""
    digest = hashlib.sha256()
    tensors = [("queries", embedder.model.queries), *sorted(embedder.model.gate.state_dict().items())]
    for name, tensor in tensors:
        data = tensor.detach().float().cpu().numpy()
        digest.update(f"{name}:{data.shape}|".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()[:32]


@dataclass
class IndexManifest:
    """The index's identity and budgets, as stored in the collection metadata. ``model_id``
    is where the model is loaded from; ``fingerprint`` is what identifies it."""

    model_id: str
    fingerprint: str
    dimension: int
    budgets: dict[str, ReasoningBudget]
    loader: LoaderSettings

    def to_metadata(self) -> dict[str, str | int]:
        metadata: dict[str, str | int] = {
            FORMAT_KEY: FORMAT_VERSION,
            MODEL_KEY: self.model_id,
            FINGERPRINT_KEY: self.fingerprint,
            DIMENSION_KEY: self.dimension,
            LOADER_KEY: self.loader.to_json(),
        }
        for role in ROLES:
            metadata[budget_key(role)] = self.budgets[role].to_json()
        return metadata

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> IndexManifest | None:
        """The manifest in a collection's metadata; ``None`` when it holds none (not ours)."""
        if not metadata or MODEL_KEY not in metadata:
            return None
        version = int(metadata.get(FORMAT_KEY, 0))
        if version != FORMAT_VERSION:
            raise IndexMismatchError(f"index format {version} is not supported (this twn-rag reads {FORMAT_VERSION})")
        try:
            return cls(
                model_id=str(metadata[MODEL_KEY]),
                fingerprint=str(metadata[FINGERPRINT_KEY]),
                dimension=int(metadata[DIMENSION_KEY]),
                budgets={role: ReasoningBudget.from_json(str(metadata[budget_key(role)])) for role in ROLES},
                loader=LoaderSettings.from_json(str(metadata[LOADER_KEY])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise IndexMismatchError(f"the collection's twn-rag metadata is incomplete or damaged ({exc!r})") from exc

    @staticmethod
    def merged_into(metadata: Mapping[str, Any] | None, manifest: IndexManifest) -> dict[str, Any]:
        """``metadata`` with the manifest keys replaced (Chroma's ``modify`` replaces the whole
        metadata, so keys set by others are carried over)."""
        others = {k: v for k, v in (metadata or {}).items() if not k.startswith(KEY_PREFIX)}
        return {**others, **manifest.to_metadata()}

    @classmethod
    def for_embedder(
        cls, embedder: TWNEmbedder, budgets: dict[str, ReasoningBudget], loader: LoaderSettings
    ) -> IndexManifest:
        return cls(
            model_id=canonical_model_id(embedder.model_id),
            fingerprint=model_fingerprint(embedder),
            dimension=embedder.dimension,
            budgets=budgets,
            loader=loader,
        )

    def check_model(self, embedder: TWNEmbedder, where: str) -> None:
        """Refuse vectors of another model or dimension, with a message saying what to do.
        The model is compared by fingerprint, so a checkpoint moved or copied elsewhere is
        accepted and one retrained in place is not."""
        if model_fingerprint(embedder) == self.fingerprint and embedder.dimension == self.dimension:
            return
        raise IndexMismatchError(
            f"index {where} was built with model {self.model_id!r} (dimension {self.dimension}); "
            f"it cannot take vectors from {embedder.model_id!r} (dimension {embedder.dimension}, other weights). "
            f"Use the index's model (--model {self.model_id}), or index into a new --index/--collection."
        )

    def check_loader(self, settings: LoaderSettings, where: str) -> None:
        if settings != self.loader:
            raise IndexMismatchError(
                f"index {where} samples documents with {self.loader}; got {settings}. "
                "Items would not match across runs: use the index's settings or a new index."
            )

    def copy(self) -> IndexManifest:
        return copy.deepcopy(self)
