"""What the LlamaIndex and LangChain integrations share: attaching to a loaded embedder,
turning framework image inputs into ``encode`` inputs, and the budgets kept in memory or bound
to a Chroma collection (``CollectionBudgetsMixin``). (The scalar metadata that records a
result's thought is ``twn_rag.result_metadata``, shared with ``TWNIndex``.)

The integrations themselves (``llama_index.embeddings.twn``, ``langchain_twn``) are thin
classes over these functions and ``TWNEmbedder.encode``; no model logic lives in them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twn_rag.budget import ReasoningBudget
from twn_rag.config import DEFAULT_MODEL, ROLES, Role
from twn_rag.device import resolve_device, resolve_dtype
from twn_rag.embedder import EmbeddingResult, TWNEmbedder
from twn_rag.index.binding import BudgetBinding, CollectionAddress

if TYPE_CHECKING:
    from twn_rag.index import TWNIndex

# The integrations' budget fields, one per role.
BUDGET_FIELDS = {role: f"{role}_budget" for role in ROLES}
# The settings of the fields both integration classes declare (each in its framework's pydantic
# class, as ``Field(**FIELD_SETTINGS[name])``): one wording, one default.
FIELD_SETTINGS: dict[str, dict[str, Any]] = {
    "model_name": {"default": DEFAULT_MODEL, "description": "TWN checkpoint: a hub id or a local directory."},
    "base_model": {
        "default": None,
        "description": "Local path of the base model, overriding the one the checkpoint names.",
    },
    "device": {"default": "auto", "description": "'auto' (cuda, mps, cpu) or a torch device name."},
    "dtype": {"default": "auto", "description": "'auto', 'float32', 'bfloat16' or 'float16'."},
    "query_budget": {
        "default": None,
        "description": "Reasoning budget for queries; None = the checkpoint's adaptive budget.",
    },
    "show_progress": {"default": False, "description": "Show a progress bar over batches while encoding."},
    "budget_collection": {
        "default": None,
        "description": "The Chroma collection whose stored budgets are spent (set by for_chroma_collection); "
        "None = the budgets above, in memory.",
    },
}


def as_float_lists(results: Sequence[EmbeddingResult]) -> list[list[float]]:
    """The vectors of ``results`` as lists of Python floats (what both frameworks expect)."""
    return [result.vector.tolist() for result in results]


def image_input(source: Any) -> dict[str, Any]:
    """An ``encode`` input for one image given as a path, bytes, a ``BytesIO`` or a PIL image.

    A ``BytesIO`` is read whole whatever its position, so the same buffer can be embedded twice.
    """
    if isinstance(source, io.BytesIO):
        return {"image": source.getvalue()}
    return {"image": source}


def text_and_image_input(text: str, image: Any | None) -> Any:
    """The ``encode`` input for a document's ``text`` with an optional ``image`` (see
    ``image_input``): the text alone when there is no image (``encode`` refuses an empty one,
    naming it), else the image with the text beside it, so both are embedded as one input."""
    if image is None:
        return text
    item = image_input(image)
    if text.strip():
        item["text"] = text
    return item


def shared_embedder_settings(
    embedder: TWNEmbedder, model_name: str | None, device: str | None, dtype: str | None
) -> dict[str, str]:
    """``model_name``, ``device`` and ``dtype`` describing an already-loaded ``embedder``, so
    that a serialised integration reloads the same model. A value left unset (``None`` or
    ``"auto"``) is taken from the embedder; a value that contradicts it raises ``ValueError``."""
    if not isinstance(embedder, TWNEmbedder):
        raise TypeError(f"embedder must be a TWNEmbedder, got {type(embedder).__name__}")
    if model_name is not None and model_name != embedder.model_id:
        raise ValueError(f"model_name {model_name!r} does not match the given embedder's model {embedder.model_id!r}")
    actual_device, actual_dtype = embedder.model.device, embedder.model.dtype
    if device not in (None, "auto") and resolve_device(device).type != actual_device.type:
        raise ValueError(f"device {device!r} does not match the given embedder's device {actual_device}")
    if dtype not in (None, "auto") and resolve_dtype(dtype, actual_device) != actual_dtype:
        raise ValueError(f"dtype {dtype!r} does not match the given embedder's dtype {actual_dtype}")
    return {
        "model_name": embedder.model_id,
        "device": str(actual_device) if device in (None, "auto") else device,
        "dtype": str(actual_dtype).removeprefix("torch.") if dtype in (None, "auto") else dtype,
    }


def without_ledgers(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (an integration's dump) with each budget reduced to its limits, as a cache key
    needs it: the ledger changes with every call, and a cached result's spend was paid already."""
    for field in BUDGET_FIELDS.values():
        if isinstance(data.get(field), dict):
            data[field] = {key: value for key, value in data[field].items() if key != "ledger"}
    return data


class CollectionBudgetsMixin:
    """The budgets of ``TWNEmbedding`` and ``TWNEmbeddings``: in memory, or bound to a Chroma collection.

    Unbound, each role's budget is the object's field (``query_budget``, ``document_budget``), its
    ledger updated in place by every call. Bound (``for_chroma_collection``, ``for_twn_index``,
    ``bind_budgets``), every call selects within the budget the collection stores for the role and
    commits its spend there (``twn_rag.index.binding``), so all routes into the collection, in any
    process, share one ledger; the fields then hold the stored budgets as of the last call, and
    ``budget(role)`` reads them now. A class using this mixin has the fields ``query_budget``,
    ``document_budget`` and ``budget_collection`` (``CollectionAddress | None``), the private
    attribute ``_budget_binding`` and an ``embedder``.
    """

    @classmethod
    def for_chroma_collection(
        cls,
        collection,
        *,
        query_budget: ReasoningBudget | None = None,
        document_budget: ReasoningBudget | None = None,
        **options: Any,
    ):
        """A new object (``options``: the class's own, e.g. ``embedder=`` or ``model_name=``)
        bound to the chromadb ``collection`` (``bind_budgets``): budgets given become the
        collection's limits, keeping its ledger; a role without one keeps the stored budget, or
        gets the checkpoint's when the collection has none. Make a new collection with
        ``twn_rag.index.create_collection`` (cosine space). ``IndexMismatchError`` when the
        collection holds a twn-rag index of another model."""
        model = cls(**options)
        model.bind_budgets(collection, query_budget=query_budget, document_budget=document_budget)
        return model

    @classmethod
    def for_twn_index(
        cls,
        index: TWNIndex | str | Path,
        *,
        collection: str | None = None,
        chroma_url: str | None = None,
        **options: Any,
    ):
        """``for_chroma_collection`` on the collection of ``index``, a ``TWNIndex`` or the
        directory of an existing one (``collection`` and ``chroma_url`` as for ``TWNIndex.open``),
        sharing the index's embedder unless ``embedder=`` is given."""
        from twn_rag.index import DEFAULT_COLLECTION, TWNIndex

        if not isinstance(index, TWNIndex):
            index = TWNIndex.open(index, collection=collection or DEFAULT_COLLECTION, chroma_url=chroma_url)
        elif collection is not None or chroma_url is not None:
            raise ValueError("collection and chroma_url are for an index directory; this TWNIndex has its own")
        options.setdefault("embedder", index.embedder)
        # TWNIndex has no public handle on its collection; reading it is all this does.
        return cls.for_chroma_collection(index.budgets.collection, **options)

    def bind_budgets(
        self,
        collection,
        *,
        query_budget: ReasoningBudget | None = None,
        document_budget: ReasoningBudget | None = None,
    ):
        """Bind this object to the chromadb ``collection`` from now on; returns it. Budgets given
        become the collection's limits (its ledger kept); a role without one keeps the stored
        budget, or, when the collection has none, gets this object's limits (not its ledger).
        ``ValueError`` when already bound to another collection."""
        bound, wanted = self.budget_collection, CollectionAddress.of(collection)
        if bound is not None and bound != wanted:
            raise ValueError(
                f"this embedding is bound to {bound.describe()}, not {wanted.describe()}; "
                "make another one (embedder=... shares the model)"
            )
        binding, stored = BudgetBinding.bind(
            collection,
            self.embedder,
            limits={"query": query_budget, "document": document_budget},
            defaults={role: self._own_budget(role) for role in ROLES},
        )
        self._budget_binding = binding
        self.budget_collection = binding.address
        self._keep_budgets(stored)
        return self

    @property
    def bound_collection(self):
        """The chromadb collection whose budgets this object spends, or ``None``."""
        return None if self._budget_binding is None else self._budget_binding.collection

    def budget(self, role: Role) -> ReasoningBudget:
        """``role``'s budget as of now: the collection's (read fresh) when bound, else this object's."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if self._budget_binding is None:
            return self._own_budget(role)
        stored = self._budget_binding.read()
        self._keep_budgets(stored)
        return stored[role]

    def _own_budget(self, role: str) -> ReasoningBudget:
        return getattr(self, BUDGET_FIELDS[role])

    def _keep_budgets(self, budgets: dict[str, ReasoningBudget]) -> None:
        for role, budget in budgets.items():
            setattr(self, BUDGET_FIELDS[role], budget)

    def _settle_budgets(self) -> None:
        """Once constructed: unset budgets become the checkpoint's, and an object constructed
        with ``budget_collection`` (a saved or pickled bound one) binds again, the budgets given
        to the constructor becoming the collection's limits."""
        given = {role: self._own_budget(role) for role in ROLES}
        self._keep_budgets({role: budget or self.embedder.default_budget(role) for role, budget in given.items()})
        self._budget_binding = None
        if self.budget_collection is not None:
            address, self.budget_collection = self.budget_collection, None
            self.bind_budgets(address.open(), query_budget=given["query"], document_budget=given["document"])

    def _encode_within_budget(self, inputs: Sequence[Any], role: Role, **options: Any) -> list[EmbeddingResult]:
        """``embedder.encode`` under ``role``'s budget: this object's, or, bound, the collection's
        (the spend committed there; the field then holds the budget as committed)."""
        if self._budget_binding is None:
            return self.embedder.encode(list(inputs), role=role, budget=self._own_budget(role), **options)
        results, committed = self._budget_binding.encode(self.embedder, list(inputs), role, **options)
        setattr(self, BUDGET_FIELDS[role], committed)
        return results
