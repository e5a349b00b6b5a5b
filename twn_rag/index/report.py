"""What an indexing run did and what an index holds, for people and for benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

from twn_rag.budget import ReasoningBudget
from twn_rag.loaders.items import FileFailure
from twn_rag.loaders.settings import LoaderSettings


@dataclass
class IngestTimings:
    """Wall time of an indexing run, split by stage: ``load_s`` (hashing, PDF rendering and
    text extraction, video decoding), ``embed_s`` (the TWN embedder), ``store_s`` (page/frame
    image files, Chroma writes, ledger updates)."""

    load_s: float = 0.0
    embed_s: float = 0.0
    store_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.load_s + self.embed_s + self.store_s

    @property
    def loader_store_share(self) -> float:
        """(load + store) / total: the overhead around embedding."""
        return (self.load_s + self.store_s) / self.total_s if self.total_s else 0.0


@dataclass
class IndexReport:
    """Outcome of ``TWNIndex.add``: files indexed or found unchanged, items written and
    removed (replaced versions), files that failed (with reasons) or were skipped, timings,
    and the document budget after the run."""

    files_indexed: int = 0
    files_unchanged: int = 0
    items_added: int = 0
    items_removed: int = 0
    failures: list[FileFailure] = field(default_factory=list)
    skipped: list[FileFailure] = field(default_factory=list)
    timings: IngestTimings = field(default_factory=IngestTimings)
    document_budget: ReasoningBudget | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class IndexInfo:
    """What an index holds: where, which model, how many items of which modality, and the
    budget of each role (limits and spend)."""

    collection: str
    location: str
    model_id: str
    dimension: int
    items: int
    sources: int
    modalities: dict[str, int]
    budgets: dict[str, ReasoningBudget]
    loader: LoaderSettings
