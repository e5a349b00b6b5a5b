"""What an indexing run did and what an index holds, for people and for benchmarks, and
how to print the paths and texts it names safely."""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from twn_rag.budget import ReasoningBudget
from twn_rag.loaders.items import FileFailure, utf8_safe
from twn_rag.loaders.settings import LoaderSettings

# Unicode categories that would break line- or tab-based output: controls (newline, tab,
# escape...), line and paragraph separators.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def printable(text: str) -> str:
    """``text`` safe to print as one field of one line: control characters and line
    separators as Python-style escapes (``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``), bytes of a
    file name that do not decode as ``\\xNN`` (``utf8_safe``). Ordinary text is unchanged."""
    return "".join(
        char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) in _UNPRINTABLE_CATEGORIES else char
        for char in utf8_safe(text)
    )


@dataclass
class IngestTimings:
    """Time of an indexing run by stage: ``load_s`` (hashing, PDF rendering and text
    extraction, video decoding, writing page/frame image files), ``embed_s`` (the TWN
    embedder), ``store_s`` (Chroma writes and ledger updates), and ``wall_s`` for the run.
    Loading runs in a background thread, overlapped with embedding, so the stages add up to
    more than the wall time when that overlap works."""

    load_s: float = 0.0
    embed_s: float = 0.0
    store_s: float = 0.0
    wall_s: float = 0.0

    @property
    def total_s(self) -> float:
        """The stage times added up: the wall time a serial pipeline would take."""
        return self.load_s + self.embed_s + self.store_s

    @property
    def loader_store_share(self) -> float:
        """(load + store) / (load + embed + store): the work around embedding, as a share."""
        return (self.load_s + self.store_s) / self.total_s if self.total_s else 0.0

    @property
    def non_embed_wall_share(self) -> float:
        """Share of the wall time not spent embedding: what loading and storing actually
        cost after the overlap (plus small fixed costs such as looking up stored items)."""
        return max(self.wall_s - self.embed_s, 0.0) / self.wall_s if self.wall_s else 0.0


@dataclass
class IndexReport:
    """Outcome of ``TWNIndex.add``: files indexed or found unchanged, items written and
    removed (replaced versions), items that thought in this run (pass 3), files that failed
    (with reasons) or were skipped, timings, and the document budget after the run."""

    files_indexed: int = 0
    files_unchanged: int = 0
    items_added: int = 0
    items_removed: int = 0
    items_thought: int = 0
    failures: list[FileFailure] = field(default_factory=list)
    skipped: list[FileFailure] = field(default_factory=list)
    timings: IngestTimings = field(default_factory=IngestTimings)
    document_budget: ReasoningBudget | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary_lines(self) -> list[str]:
        """For people: the counts, the time split, the document budget, then one
        ``skipped path: reason`` line per skipped file."""
        timings = self.timings
        lines = [
            f"indexed {self.files_indexed} files ({self.items_added} items added, "
            f"{self.items_removed} old items removed), {self.files_unchanged} unchanged, "
            f"{len(self.skipped)} skipped, {len(self.failures)} failed"
        ]
        time_line = f"time: {timings.wall_s:.2f} s"
        if timings.embed_s > 0:
            time_line += (
                f"; embed {timings.embed_s:.2f} s, load {timings.load_s:.2f} s (overlapped with embedding), "
                f"store {timings.store_s:.2f} s; {timings.non_embed_wall_share:.0%} of the time not embedding"
            )
        lines.append(time_line)
        if self.document_budget is not None:
            lines.append(f"document budget: {self.document_budget.describe()}")
        lines += [f"skipped {printable(entry.path)}: {printable(entry.reason)}" for entry in self.skipped]
        return lines

    def failure_lines(self) -> list[str]:
        """One ``FAILED path: reason`` line per file that failed (for stderr)."""
        return [f"FAILED {printable(entry.path)}: {printable(entry.reason)}" for entry in self.failures]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the counts, skips and failures, timings and document budget."""
        return dataclasses.asdict(self)


class IndexingAborted(RuntimeError):
    """An error that is no file's fault (the store, the disk, a bug) stopped ``TWNIndex.add``.
    ``report`` holds what was done before it, ``path`` the file being indexed (``None`` when
    none was), and the error is the ``__cause__``."""

    def __init__(self, report: IndexReport, path: str | None, error: BaseException):
        self.report = report
        self.path = None if path is None else utf8_safe(path)
        where = f" while indexing {self.path}" if self.path is not None else ""
        super().__init__(f"indexing stopped{where}: {type(error).__name__}: {error}")


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

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: where, which model, counts, budgets and loader settings."""
        return dataclasses.asdict(self)
