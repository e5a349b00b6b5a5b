"""What an index must remember about itself, kept in the Chroma collection's metadata:
the model id and vector dimension, the loader settings, and one ``ReasoningBudget`` (with its
ledger) per role. Chroma accepts only scalar collection metadata (a list value crashes its
core), so structured values are stored as JSON text."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twn_rag.budget import ReasoningBudget
from twn_rag.config import ROLES
from twn_rag.index.errors import IndexMismatchError
from twn_rag.loaders.settings import LoaderSettings

FORMAT_VERSION = 1
KEY_PREFIX = "twn_"
FORMAT_KEY = "twn_format"
MODEL_KEY = "twn_model_id"
DIMENSION_KEY = "twn_dimension"
LOADER_KEY = "twn_loader"


def budget_key(role: str) -> str:
    return f"twn_budget_{role}"


def canonical_model_id(model_id: str) -> str:
    """A local checkpoint directory as its absolute path (so ``./ckpt`` and ``/abs/ckpt``
    match); a hub id unchanged."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if path.is_dir() else model_id


@dataclass
class IndexManifest:
    """The index's identity and budgets, as stored in the collection metadata."""

    model_id: str
    dimension: int
    budgets: dict[str, ReasoningBudget]
    loader: LoaderSettings

    def to_metadata(self) -> dict[str, str | int]:
        metadata: dict[str, str | int] = {
            FORMAT_KEY: FORMAT_VERSION,
            MODEL_KEY: self.model_id,
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
        return cls(
            model_id=str(metadata[MODEL_KEY]),
            dimension=int(metadata[DIMENSION_KEY]),
            budgets={role: ReasoningBudget.from_json(str(metadata[budget_key(role)])) for role in ROLES},
            loader=LoaderSettings.from_json(str(metadata[LOADER_KEY])),
        )

    @staticmethod
    def merged_into(metadata: Mapping[str, Any] | None, manifest: IndexManifest) -> dict[str, Any]:
        """``metadata`` with the manifest keys replaced (Chroma's ``modify`` replaces the whole
        metadata, so keys set by others are carried over)."""
        others = {k: v for k, v in (metadata or {}).items() if not k.startswith(KEY_PREFIX)}
        return {**others, **manifest.to_metadata()}

    def check_model(self, model_id: str, dimension: int, where: str) -> None:
        """Refuse vectors of another model or dimension, with a message saying what to do."""
        same_model = canonical_model_id(model_id) == canonical_model_id(self.model_id)
        if same_model and dimension == self.dimension:
            return
        raise IndexMismatchError(
            f"index {where} was built with model {self.model_id!r} (dimension {self.dimension}); "
            f"it cannot take vectors from {model_id!r} (dimension {dimension}). "
            f"Use --model {self.model_id} with this index, or index into a new --index/--collection."
        )

    def check_loader(self, settings: LoaderSettings, where: str) -> None:
        if settings != self.loader:
            raise IndexMismatchError(
                f"index {where} samples documents with {self.loader}; got {settings}. "
                "Items would not match across runs: use the index's settings or a new index."
            )

    def copy(self) -> IndexManifest:
        return copy.deepcopy(self)
