"""Scale-out benchmark: ``TWNIndex.add`` in one process vs on a local Ray cluster with 1 and 2
CPU encoder actors (1 torch thread each), and the global budget allocation vs the old
per-batch greedy one.

Throughput: the same generated PDFs are indexed into a fresh embedded index by each route,
under an adaptive budget (a quarter of the items think), with the small benchmark TWN; the
Ray runs include starting the actors and loading the model in each (once per pass), not
starting the cluster (printed apart). "Ray overhead" is the share of a 1-worker Ray run's wall
time beyond the single-process run at one thread.

Allocation: on the gate scores the first pass stored (one per item), the sum of the scores of
the items chosen by the global selection, and by the old way: ``ReasoningBudget.select`` batch
after batch in arrival order with a cumulative ledger (what ``add`` did before), for a few
think ratios. Both take the same number of thinkers; the global one takes the best.

Run: ``.venv/bin/python benchmarks/bench_scale.py`` (about 3-5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_checkpoint

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.index import TWNIndex
from twn_rag.result_metadata import GATE_SCORE_KEY
from twn_rag.samples import write_sample_pdf

FILES, PAGES = 4, 24
THINK_RATIO = 0.25
MAX_THOUGHT_TOKENS = 8
BATCH_SIZE = 4
RATIOS = (0.1, 0.2, 0.3, 0.5)


def budget(ratio: float = THINK_RATIO) -> ReasoningBudget:
    return ReasoningBudget(threshold=0.0, max_think_ratio=ratio, max_thought_tokens=MAX_THOUGHT_TOKENS)


def write_corpus(folder: Path) -> list[Path]:
    return [
        write_sample_pdf(
            folder / f"report{n}.pdf", [f"Report {n}, section {p}: figures {n * p}." for p in range(PAGES)]
        )
        for n in range(FILES)
    ]


def timed_add(index: TWNIndex, files: list[Path], **executor) -> tuple[float, object]:
    started = time.perf_counter()
    report = index.add(files, batch_size=BATCH_SIZE, **executor)
    assert report.ok and report.items_added == FILES * PAGES, report
    return time.perf_counter() - started, report


def greedy_per_batch(scores_in_arrival_order: list[float], ratio: float) -> list[int]:
    """The positions the old ``add`` let think: ``select`` per batch, in arrival order."""
    old = budget(ratio)
    chosen: list[int] = []
    for start in range(0, len(scores_in_arrival_order), BATCH_SIZE):
        picked = old.select(scores_in_arrival_order[start : start + BATCH_SIZE])
        old.record([MAX_THOUGHT_TOKENS] * len(picked))
        chosen += [start + i for i in picked]
    return chosen


def global_selection(scores: list[float], ratio: float) -> list[int]:
    """The positions the global selection lets think (all counted as seen first)."""
    new = budget(ratio)
    new.ledger.items_seen = len(scores)
    return new.select_counted(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    checkpoint = bench_checkpoint()
    workdir = Path(tempfile.mkdtemp(prefix="twn-bench-scale-"))
    files = write_corpus(workdir / "docs")
    items = FILES * PAGES
    embedder = TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")

    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        index = TWNIndex.open(workdir / f"local-{threads}", embedder, document_budget=budget())
        seconds, report = timed_add(index, files)
        rows.append((f"single process, {threads} torch thread(s)", seconds, report))
    torch.set_num_threads(1)
    local_index = index

    import ray

    started = time.perf_counter()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)  # 2 actors + 1 CPU for the loading tasks
    ray_start = time.perf_counter() - started
    for workers in (1, 2):
        index = TWNIndex.open(workdir / f"ray-{workers}", embedder, document_budget=budget())
        seconds, report = timed_add(index, files, executor="ray", workers=workers)
        rows.append((f"Ray, {workers} CPU actor(s) x 1 thread", seconds, report))
    ray.shutdown()

    print(
        f"\ncorpus: {FILES} PDFs x {PAGES} pages = {items} items; think ratio {THINK_RATIO}, "
        f"<= {MAX_THOUGHT_TOKENS} tokens per thought, batch {BATCH_SIZE}; ray.init {ray_start:.1f} s (not counted)"
    )
    print("| route | wall s | items/s | thinkers | embed s (summed over workers) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, report in rows:
        embed_s = report.timings.embed_s
        print(f"| {name} | {seconds:.1f} | {items / seconds:.2f} | {report.items_thought} | {embed_s:.1f} |")
    single, ray_one = rows[0][1], rows[2][1]
    print(f"Ray overhead share (1 actor vs single process, 1 thread): {(ray_one - single) / ray_one:.0%}")
    print(f"speed-up 2 actors / 1 actor: {rows[2][1] / rows[3][1]:.2f}x")

    # Allocation: the stored pass-1 gate scores, in the order the old add met them.
    found = local_index._collection.get(include=["metadatas"])
    by_id = dict(zip(found["ids"], found["metadatas"]))
    arrival = sorted(by_id, key=lambda i: (str(by_id[i]["source"]), int(by_id[i]["page"])))
    scores = [float(by_id[i][GATE_SCORE_KEY]) for i in arrival]
    ideal = sorted(scores, reverse=True)
    print("\n| think ratio | thinkers | gate-score sum, global | per-batch greedy | best possible | greedy / global |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for ratio in RATIOS:
        chosen_global = global_selection(scores, ratio)
        chosen_greedy = greedy_per_batch(scores, ratio)
        k = math.floor(ratio * len(scores) + 1e-9)
        sum_global = sum(scores[i] for i in chosen_global)
        sum_greedy = sum(scores[i] for i in chosen_greedy)
        print(
            f"| {ratio:.1f} | {len(chosen_global)} / {len(chosen_greedy)} | {sum_global:.3f} | {sum_greedy:.3f} "
            f"| {sum(ideal[:k]):.3f} | {sum_greedy / sum_global:.3f} |"
        )


if __name__ == "__main__":
    main()
