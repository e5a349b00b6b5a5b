"""Passes 1 and 3 of ``TWNIndex.add`` on a Ray cluster, with Ray Data: files load in Ray tasks
(``flat_map``), an actor pool of TWN encoders embeds (``map_batches`` with a callable class and
``ActorPoolStrategy``: each actor loads the model once). The driver selects (pass 2) and writes
every record, so the store and the ledger see one writer, as with the local passes.

A multi-machine cluster needs what every node can reach: a Chroma server (``--chroma-url``) for
the records and an index directory on a shared filesystem for the page and frame images the
loading tasks write. Ray is optional (``pip install 'twn-rag[ray]'``), imported only here.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twn_rag.index.passes import (
    FileJob,
    Outcome,
    PassSettings,
    ThinkJob,
    embed_with_thoughts,
    embed_without_thinking,
    new_items,
    selected_items,
)
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.settings import LoaderSettings

logger = logging.getLogger(__name__)

RAY_EXTRA_HINT = "the Ray executor needs Ray Data: pip install 'twn-rag[ray]' (or pip install 'ray[data]')"
# CPUs each encoder actor takes (and torch threads it uses) when it has no GPU.
CPUS_PER_WORKER = 1


def import_ray():
    """The ``ray`` module, or ``ImportError`` saying what to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(RAY_EXTRA_HINT) from exc
    return ray


def _load_file(row: dict[str, Any], loader: LoaderSettings, images_dir: str) -> list[dict[str, Any]]:
    """A Ray task: the new items of one file (pickled, images written), then one row closing
    the file with the reason it could not be read further (``""`` when it was read whole)."""
    job: FileJob = pickle.loads(row["job"])
    started = time.perf_counter()
    rows, error = [], ""
    try:
        for item in new_items(job, loader, Path(images_dir)):
            rows.append({"file": row["file"], "item": pickle.dumps(item), "error": ""})
    except LoadError as exc:
        error = exc.reason
    rows.append({"file": row["file"], "item": b"", "error": error, "load_s": time.perf_counter() - started})
    for entry in rows[:-1]:
        entry["load_s"] = 0.0
    return rows


def _load_selected(row: dict[str, Any], loader: LoaderSettings) -> list[dict[str, Any]]:
    """A Ray task: the chosen items of one file (pickled with their gate score), or why not."""
    job: ThinkJob = pickle.loads(row["job"])
    return [
        {
            "id": item_id,
            "item": pickle.dumps(item) if isinstance(item, DocumentItem) else b"",
            "error": item if isinstance(item, str) else "",
            "gate": job.gate_scores[item_id],
        }
        for item_id, item in selected_items(job, loader)
    ]


class TWNEncoderActor:
    """A Ray Data callable class: loads the model once per actor, then embeds each batch of
    rows without thinking (``max_tokens`` is ``None``, pass 1) or with thoughts (pass 3).
    Rows without an item pass through; every row gets an ``outcome`` (pickled
    ``EmbeddingResult`` or reason) and the seconds spent embedding its batch."""

    def __init__(
        self,
        model: str,
        dtype: str,
        batch_size: int,
        max_tokens: int | None,
        threads: int,
        encode_limits: dict[str, Any] | None = None,
    ):
        import torch

        from twn_rag.embedder import TWNEmbedder
        from twn_rag.index.manifest import canonical_model_id

        torch.set_num_threads(threads)
        self.embedder = TWNEmbedder.from_pretrained(canonical_model_id(model), dtype=dtype)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.encode_limits = dict(encode_limits or {})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        records = list(batch["item"])
        positions = [i for i, data in enumerate(records) if len(data)]
        items = [pickle.loads(records[i]) for i in positions]
        outcomes: list[Any] = [str(error) for error in batch["error"]]
        if items:
            if self.max_tokens is None:
                embedded = embed_without_thinking(self.embedder, items, self.batch_size, **self.encode_limits)
            else:
                scores = {item.id: float(batch["gate"][i]) for i, item in zip(positions, items)}
                embedded = embed_with_thoughts(
                    self.embedder, items, scores, self.max_tokens, self.batch_size, **self.encode_limits
                )
            for i, item, outcome in zip(positions, items, embedded):
                item.release_pixels()  # the image is saved; only the record goes back
                records[i] = pickle.dumps(item)
                outcomes[i] = outcome
        seconds = (time.perf_counter() - started) / max(len(outcomes), 1)
        return {
            **batch,
            "item": np.array(records, dtype=object),
            "outcome": np.array([pickle.dumps(outcome) for outcome in outcomes], dtype=object),
            "embed_s": np.full(len(outcomes), seconds),
        }


class RayPasses:
    """Passes 1 and 3 on Ray (module docstring); the same interface as ``LocalPasses``.
    Connects to the cluster at ``address`` (a new local one when ``None`` and none is running).
    Actors load ``model`` in ``dtype`` (the driver's, when it has the model loaded, so that
    vectors match a single-process run)."""

    def __init__(
        self,
        model: str,
        settings: PassSettings,
        *,
        address: str | None = None,
        workers: int = 1,
        gpus_per_worker: float = 0.0,
        dtype: str = "auto",
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {gpus_per_worker}")
        self.ray = import_ray()
        if not self.ray.is_initialized():
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster needs no token
            self.ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.model = model
        self.settings = settings
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.dtype = dtype
        cpus = self.ray.cluster_resources().get("CPU", 0)
        if not gpus_per_worker and workers * CPUS_PER_WORKER >= cpus:
            logger.warning(
                "%d encoder actors take all %d CPUs of the cluster: the loading tasks may wait for a free CPU",
                workers,
                int(cpus),
            )

    def _encoded(self, dataset, max_tokens: int | None):
        return dataset.map_batches(
            TWNEncoderActor,
            fn_constructor_kwargs={
                "model": self.model,
                "dtype": self.dtype,
                "batch_size": self.settings.batch_size,
                "max_tokens": max_tokens,
                "threads": CPUS_PER_WORKER,
                "encode_limits": self.settings.encode_limits,
            },
            batch_size=self.settings.batch_size,
            compute=self.ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=0 if self.gpus_per_worker else CPUS_PER_WORKER,
            num_gpus=self.gpus_per_worker or None,
        )  # Ray Data restarts an actor that dies (its node, or a kill) and retries its batches

    def _dataset(self, jobs: Sequence[Any], key: str):
        rows = [{key: index, "job": pickle.dumps(job)} for index, job in enumerate(jobs)]
        return self.ray.data.from_items(rows, override_num_blocks=max(len(rows), 1))

    def first_pass(self, jobs: Sequence[FileJob]) -> Iterator[tuple[FileJob, Iterator[tuple[DocumentItem, Outcome]]]]:
        """Each job with the stream of its new items' outcomes, in file order (Ray Data keeps
        the order); a file's stream raises ``LoadError`` where its loading failed."""
        if not jobs:
            return
        options = self.ray.data.DataContext.get_current().execution_options
        kept, options.preserve_order = options.preserve_order, True  # a file's items are stored in order
        try:
            loaded = self._dataset(jobs, "file").flat_map(
                _load_file, fn_kwargs={"loader": self.settings.loader, "images_dir": str(self.settings.images_dir)}
            )
            rows = self._encoded(loaded, None).iter_rows()
            for index, file_rows in itertools.groupby(rows, key=lambda row: int(row["file"])):
                yield jobs[index], self._file_outcomes(jobs[index], file_rows)
        finally:
            options.preserve_order = kept

    def _file_outcomes(self, job: FileJob, rows) -> Iterator[tuple[DocumentItem, Outcome]]:
        for row in rows:
            self.settings.timings.embed_s += float(row["embed_s"])
            if len(row["item"]):
                yield pickle.loads(row["item"]), pickle.loads(row["outcome"])
                continue
            self.settings.timings.load_s += float(row["load_s"])
            if row["error"]:
                raise LoadError(job.ref.path, str(row["error"]))

    def third_pass(self, jobs: Sequence[ThinkJob], max_tokens: int) -> Iterator[tuple[str, Outcome]]:
        """``(id, outcome)`` for every chosen item of ``jobs``, as the actors finish them."""
        if not jobs:
            return
        loaded = self._dataset(jobs, "file").flat_map(_load_selected, fn_kwargs={"loader": self.settings.loader})
        for row in self._encoded(loaded, max_tokens).iter_rows():
            self.settings.timings.embed_s += float(row["embed_s"])
            yield str(row["id"]), pickle.loads(row["outcome"])
