"""What an index must remember about itself, kept in the Chroma collection's metadata:
the model id, the model's fingerprint (per component) and vector dimension, the loader
settings, and one ``ReasoningBudget`` (with its ledger) per role. Chroma accepts only scalar
collection metadata (a list value crashes its core), so structured values are stored as JSON
text.

Format 2 stores the fingerprint's components as JSON; format 1 (older indexes) stored a single
digest of the queries and the gate, which is still read (and replaced by the components once the
index is opened with its model, see ``TWNIndex``)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twn_rag.budget import ReasoningBudget
from twn_rag.config import ROLES
from twn_rag.index.budget_store import BUDGET_KEY_PREFIX, budget_key
from twn_rag.index.errors import IndexMismatchError
from twn_rag.index.fingerprint import LEGACY, ModelFingerprint
from twn_rag.index.fingerprint import model_fingerprint as model_fingerprint  # the one-string form, for callers
from twn_rag.loaders.settings import LoaderSettings

if TYPE_CHECKING:
    from twn_rag.embedder import TWNEmbedder

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1  # a single digest of queries and gate under FINGERPRINT_KEY
KEY_PREFIX = "twn_"
FORMAT_KEY = "twn_format"
MODEL_KEY = "twn_model_id"
FINGERPRINT_KEY = "twn_model_fingerprint"
DIMENSION_KEY = "twn_dimension"
LOADER_KEY = "twn_loader"


def canonical_model_id(model_id: str) -> str:
    """A local checkpoint directory as its absolute path (so ``./ckpt`` and ``/abs/ckpt``
    match); a hub id unchanged."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if path.is_dir() else model_id


def _listing(parts: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


@dataclass
class IndexManifest:
    """The index's identity and budgets, as stored in the collection metadata. ``model_id``
    is where the model is loaded from; ``identity`` (its fingerprint) is what identifies it."""

    model_id: str
    identity: ModelFingerprint
    dimension: int
    budgets: dict[str, ReasoningBudget]
    loader: LoaderSettings

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint as one string."""
        return self.identity.digest

    def to_metadata(self) -> dict[str, str | int]:
        legacy = self.identity.is_legacy  # kept in format 1 until the index is opened with its model
        metadata: dict[str, str | int] = {
            FORMAT_KEY: LEGACY_FORMAT_VERSION if legacy else FORMAT_VERSION,
            MODEL_KEY: self.model_id,
            FINGERPRINT_KEY: self.identity.components[LEGACY] if legacy else self.identity.to_json(),
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
        if version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION):
            raise IndexMismatchError(
                f"index format {version} is not supported (this twn-rag reads {LEGACY_FORMAT_VERSION} "
                f"and {FORMAT_VERSION}); upgrade twn-rag"
            )
        try:
            stored = str(metadata[FINGERPRINT_KEY])
            return cls(
                model_id=str(metadata[MODEL_KEY]),
                identity=ModelFingerprint.legacy(stored)
                if version == LEGACY_FORMAT_VERSION
                else ModelFingerprint.from_json(stored),
                dimension=int(metadata[DIMENSION_KEY]),
                budgets={role: ReasoningBudget.from_json(str(metadata[budget_key(role)])) for role in ROLES},
                loader=LoaderSettings.from_json(str(metadata[LOADER_KEY])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise IndexMismatchError(f"the collection's twn-rag metadata is incomplete or damaged ({exc!r})") from exc

    @staticmethod
    def merged_into(metadata: Mapping[str, Any] | None, manifest: IndexManifest) -> dict[str, Any]:
        """``metadata`` with the manifest keys replaced (Chroma's ``modify`` replaces the whole
        metadata, so keys set by others are carried over). Budgets already stored stay as they
        are: after creation they change only through ``budget_store``."""
        metadata = dict(metadata or {})
        others = {k: v for k, v in metadata.items() if not k.startswith(KEY_PREFIX)}
        stored_budgets = {k: v for k, v in metadata.items() if k.startswith(BUDGET_KEY_PREFIX)}
        return {**others, **manifest.to_metadata(), **stored_budgets}

    @classmethod
    def for_embedder(
        cls,
        embedder: TWNEmbedder,
        budgets: dict[str, ReasoningBudget],
        loader: LoaderSettings,
        identity: ModelFingerprint | None = None,
    ) -> IndexManifest:
        """A new index's manifest; ``identity``: the embedder's fingerprint, when already computed."""
        return cls(
            model_id=canonical_model_id(embedder.model_id),
            identity=identity or ModelFingerprint.of(embedder),
            dimension=embedder.dimension,
            budgets=budgets,
            loader=loader,
        )

    def with_identity(self, identity: ModelFingerprint) -> IndexManifest:
        return dataclasses.replace(self, identity=identity)

    def check_model(self, embedder: TWNEmbedder, where: str, identity: ModelFingerprint | None = None) -> None:
        """Refuse vectors of another model or dimension, with a message saying what differs and
        what to do. The model is compared component by component (``twn_rag.index.fingerprint``),
        so a checkpoint moved or copied elsewhere is accepted and one retrained in place is not;
        a format-1 index by its single legacy digest. ``identity``: the embedder's fingerprint,
        when already computed (recomputed if it holds other components than the stored one)."""
        names = list(self.identity.components)
        if identity is None or list(identity.components) != names:
            identity = ModelFingerprint.of(embedder, names)
        differences = self.identity.differences(identity)
        if not differences and embedder.dimension == self.dimension:
            return
        verb = "differs" if len(differences) == 1 else "differ"
        what = f", other weights: {_listing(differences)} {verb}" if differences else ""
        raise IndexMismatchError(
            f"index {where} was built with model {self.model_id!r} (dimension {self.dimension}); "
            f"it cannot take vectors from {embedder.model_id!r} (dimension {embedder.dimension}{what}). "
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
