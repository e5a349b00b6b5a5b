"""Ingest benchmark: where does the time of ``twn-rag index`` go?

A generated multi-page PDF and a generated video are indexed into a fresh embedded Chroma
index with a small benchmark TWN (a Qwen3-VL of some tens of millions of parameters, random
weights, built offline). ``TWNIndex.add`` times its stages; this script prints, side by side
in one run, the split into load (hashing, PDF rendering + text extraction, video decoding),
embed (the TWN embedder) and store (page/frame image files, Chroma writes, ledger updates),
and the loader+store share of the total, for two budgets: no thinking (embedding is cheapest,
so the overhead share is largest) and adaptive thinking capped at a quarter of the items.
Loading runs a chunk ahead in a background thread, so the last column (the share of wall time
not spent embedding) is what loading and storing cost after that overlap; "load+store %" is
their share of the stage times added up (what a serial pipeline would pay).

Run: ``.venv/bin/python benchmarks/bench_ingest.py`` (about 2-4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_HIDDEN_SIZE, BENCH_IMAGE_MAX_PIXELS, BENCH_LAYERS, BENCH_VIDEO_FPS, bench_checkpoint

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.index import IngestTimings, TWNIndex
from twn_rag.loaders import LoaderSettings, load_items
from twn_rag.samples import write_sample_pdf, write_sample_video

# The loaders render pages and frames at the benchmark model's own image cap.
IMAGE_MAX_PIXELS = BENCH_IMAGE_MAX_PIXELS
MAX_THOUGHT_TOKENS = 24
PDF_PAGES = 24
PDF_PAGE_SIZE = (612.0, 792.0)  # US letter, in points
VIDEO_SECONDS, VIDEO_FPS, VIDEO_SIZE, SAMPLE_FPS = 16.0, 24, (640, 360), BENCH_VIDEO_FPS
BUDGETS = {
    "no thinking": ReasoningBudget(mode="never", max_thought_tokens=MAX_THOUGHT_TOKENS),
    "adaptive, <= 25% think": ReasoningBudget(
        mode="adaptive", threshold=0.0, max_think_ratio=0.25, max_thought_tokens=MAX_THOUGHT_TOKENS
    ),
}


def run(embedder: TWNEmbedder, documents: dict[str, Path], budget: ReasoningBudget, workdir: Path) -> dict:
    """Index each document into a fresh index; timings per document and in total."""
    index = TWNIndex.open(workdir / "index", embedder, document_budget=budget)
    rows = {}
    total = IngestTimings()
    for name, path in documents.items():
        started = time.perf_counter()
        report = index.add([path])
        wall = time.perf_counter() - started
        assert report.ok and report.items_added > 0, report
        rows[name] = (report.items_added, report.timings, wall)
        for field in ("load_s", "embed_s", "store_s", "wall_s"):
            setattr(total, field, getattr(total, field) + getattr(report.timings, field))
    ledger = index.budget("document").ledger
    rows["total"] = (sum(r[0] for r in rows.values()), total, sum(r[2] for r in rows.values()))
    return {"rows": rows, "thought": f"{ledger.items_thought}/{ledger.items_seen}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the embedder (default 1: the loaders use one core too, and on a shared "
        "machine more threads than free cores slow torch down by an order of magnitude)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally
    torch.set_num_threads(args.threads)
    checkpoint = bench_checkpoint()
    embedder = TWNEmbedder.from_pretrained(checkpoint)
    params = sum(p.numel() for p in embedder.model.backbone.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        documents = {
            f"PDF, {PDF_PAGES} pages": write_sample_pdf(tmp_path / "doc.pdf", PDF_PAGES, page_size=PDF_PAGE_SIZE),
            f"video {VIDEO_SECONDS:.0f} s {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}": write_sample_video(
                tmp_path / "clip.mp4", seconds=VIDEO_SECONDS, fps=VIDEO_FPS, size=VIDEO_SIZE
            ),
        }
        # First-call initialisation (imports, kernels) is not ingest work: warm both sides up.
        warm = load_items([documents[next(iter(documents))]], LoaderSettings(max_image_pixels=IMAGE_MAX_PIXELS))[0]
        embedder.encode([warm[0].to_input()], role="document")
        print(
            f"model: Qwen3-VL {params / 1e6:.1f} M params (hidden {BENCH_HIDDEN_SIZE}, {BENCH_LAYERS} layers), "
            f"{embedder.model.dtype}, {args.threads} torch thread(s), {IMAGE_MAX_PIXELS} px per page/frame, "
            f"video sampled at {SAMPLE_FPS} fps"
        )
        header = f"{'budget':<24} {'input':<24} {'items':>5} {'load s':>7} {'embed s':>8} {'store s':>8}"
        header += f" {'wall s':>7} {'load %':>7} {'store %':>8} {'load+store %':>13} {'not-embed % of wall':>20}"
        print(header)
        for label, budget in BUDGETS.items():
            embedder.thought_cache.clear()
            result = run(embedder, documents, budget, tmp_path / label.replace(" ", "-").replace("%", ""))
            for name, (items, t, _wall) in result["rows"].items():
                total = t.total_s or 1.0
                print(
                    f"{label:<24} {name:<24} {items:>5} {t.load_s:>7.2f} {t.embed_s:>8.2f} {t.store_s:>8.2f}"
                    f" {t.wall_s:>7.2f} {100 * t.load_s / total:>6.1f}% {100 * t.store_s / total:>7.1f}%"
                    f" {100 * t.loader_store_share:>12.1f}% {100 * t.non_embed_wall_share:>19.1f}%"
                )
            print(f"{'':<24} thought {result['thought']} items")


if __name__ == "__main__":
    main()
