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

Then, counted in tokens (no seconds): the padding share of the embedding passes over a mixed
corpus (short queries, pages with their image and text layer, two of them with a runaway text
layer, figures, video frames) with the batches ``encode`` formed before issue 13 (a size proxy,
8 inputs per batch, no text cap) and with token-aware batches (exact row lengths, then
``max_batch_tokens``, then ``max_input_tokens``), side by side. Positions are read from the
attention masks the processor builds for each batch; the vision tower never runs.

Run: ``.venv/bin/python benchmarks/bench_ingest.py`` (about 2-4 minutes on 2 cores);
``--padding-only`` for the token counts alone (about 30 s).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_HIDDEN_SIZE, BENCH_IMAGE_MAX_PIXELS, BENCH_LAYERS, BENCH_VIDEO_FPS, CACHE, bench_checkpoint

from twn_rag import EmbeddingInput, ReasoningBudget, TWNEmbedder
from twn_rag.batching import DEFAULT_MAX_BATCH_TOKENS
from twn_rag.config import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_INPUT_TOKENS
from twn_rag.embedder import DEFAULT_BATCH_SIZE
from twn_rag.index import IngestTimings, TWNIndex
from twn_rag.loaders import LoaderSettings, load_items
from twn_rag.samples import make_sample_image, write_sample_pdf, write_sample_video

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


# -- padding share of the embedding passes (issue 13) ------------------------------------------
# The corpus, in Qwen3-VL text tokens (about 4 characters each; the counting model's tokenizer is
# a tiny BPE, so texts are cut to these token counts rather than written at a character count).
PADDING_SEED = 0
QUERY_TOKENS = (6, 30)
PAGE_TEXT_TOKENS = [(150, 900)] * 18 + [(1200, 2000)] * 4  # ordinary and dense pages
RUNAWAY_PAGE_TOKENS = (12_000, 24_000)  # text layers no reader sees: hidden text, OCR noise
QUERIES, FIGURES, FRAMES = 40, 8, 8
FIGURE_SIZES = ((400, 300), (800, 600), (1200, 900), (1600, 1200))
FRAME_SIZE = (640, 360)
WORDS = (
    "invoice total tax line item paid due date customer order shipment warehouse report quarter revenue "
    "margin forecast budget index page figure table chart video frame model embedding retrieval query "
    "document answer reason think gate adapter backbone vision text token batch padding memory device"
).split()


def counting_checkpoint() -> Path:
    """A tiny TWN whose processor sees images as the released one does (``DEFAULT_MAX_IMAGE_PIXELS``,
    about 1,000 visual tokens for a page): only its processor and tokenizer are used."""
    from twn_rag.testing import build_tiny_backbone, build_tiny_twn_checkpoint

    target = CACHE / f"count-twn-px{DEFAULT_MAX_IMAGE_PIXELS}"
    if not (target / "gate_mlp.pt").is_file():
        backbone = build_tiny_backbone(target / "backbone", image_max_pixels=DEFAULT_MAX_IMAGE_PIXELS)
        build_tiny_twn_checkpoint(
            target, backbone_dir=backbone, num_queries=16, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS
        )
    return target


def mixed_corpus(embedder: TWNEmbedder, workdir: Path) -> list[EmbeddingInput]:
    """Queries, pages (a rendered US-letter page and its text layer), figures and video frames,
    shuffled (seeded), as ``encode`` sees them."""
    rng = random.Random(PADDING_SEED)
    cut = embedder.processor.truncate_text

    def text(tokens: int) -> str:
        return cut(" ".join(rng.choice(WORDS) for _ in range(tokens)), tokens)[0]

    page_texts = [text(rng.randint(*span)) for span in PAGE_TEXT_TOKENS] + [text(n) for n in RUNAWAY_PAGE_TOKENS]
    pdf = write_sample_pdf(workdir / "pages.pdf", len(page_texts), page_size=PDF_PAGE_SIZE)
    pages = load_items([pdf], LoaderSettings(max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS))[0]
    inputs = [text(rng.randint(*QUERY_TOKENS)) for _ in range(QUERIES)]
    inputs += [{"text": body, "image": page.image} for body, page in zip(page_texts, pages)]
    inputs += [make_sample_image(FIGURE_SIZES[i % len(FIGURE_SIZES)], seed=i) for i in range(FIGURES)]
    inputs += [make_sample_image(FRAME_SIZE, seed=100 + i) for i in range(FRAMES)]
    rng.shuffle(inputs)
    return embedder.prepare(inputs, max_input_tokens=None)


def batches_before_issue_13(items: list[EmbeddingInput], batch_size: int) -> list[list[int]]:
    """How ``encode`` formed batches before issue 13 (commit e661261): sorted by a size proxy
    (characters + pixels / 256), cut every ``batch_size`` inputs."""

    def proxy(item: EmbeddingInput) -> int:
        pixels = sum(i.width * i.height for i in item.images) + sum(i.width * i.height for i in item.video or [])
        return len(item.text) + pixels // 256

    order = sorted(range(len(items)), key=lambda i: proxy(items[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class PassCounts:
    """Positions of a run's embedding passes, from the processor's attention masks."""

    passes: int = 0
    real: int = 0
    total: int = 0
    largest: int = 0

    @property
    def padded(self) -> int:
        return self.total - self.real

    @property
    def padding_share(self) -> float:
        return self.padded / self.total if self.total else 0.0


def count_positions(embedder: TWNEmbedder, items: list[EmbeddingInput], batches: list[list[int]]) -> PassCounts:
    """Build each batch's embedding pass with the processor (as ``encode`` does) and count its
    positions: all (rows x longest row, query slots included) and real (attended)."""
    counts = PassCounts()
    for batch in batches:
        members = [items[i] for i in batch]
        instructions, _ = embedder.prompts(members, "document")
        mask = embedder.processor.embedding_batch(members, instructions, [None] * len(members))["attention_mask"]
        counts.passes += 1
        counts.real += int(mask.sum())
        counts.total += mask.numel()
        counts.largest = max(counts.largest, mask.numel())
    return counts


def padding_report(workdir: Path) -> None:
    """Print the padding table: the batches before issue 13 and the token-aware ones, one corpus."""
    embedder = TWNEmbedder.from_pretrained(counting_checkpoint(), device="cpu", dtype="float32")
    items = mixed_corpus(embedder, workdir)
    capped = [embedder.processor.truncated(item, DEFAULT_MAX_INPUT_TOKENS) for item in items]

    def planned(run_items: list[EmbeddingInput], max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS):
        return embedder.plan_batches(
            run_items, "document", ReasoningBudget(mode="never"), DEFAULT_BATCH_SIZE, max_batch_tokens
        )

    runs = {
        "before: size proxy, 8 per batch": (items, batches_before_issue_13(items, DEFAULT_BATCH_SIZE)),
        "exact row lengths, 8 per batch": (items, planned(items, max_batch_tokens=None)),
        f"+ max_batch_tokens {DEFAULT_MAX_BATCH_TOKENS}": (items, planned(items)),
        f"+ max_input_tokens {DEFAULT_MAX_INPUT_TOKENS}": (capped, planned(capped)),
    }
    pages = len(PAGE_TEXT_TOKENS) + len(RUNAWAY_PAGE_TOKENS)
    kinds = f"{QUERIES} queries, {pages} pages, {FIGURES} figures, {FRAMES} frames"
    print(f"\npadding of the embedding passes, one encode call over {len(items)} inputs ({kinds})")
    header = f"{'batching':<34} {'passes':>6} {'real pos':>9} {'padded pos':>10} {'all pos':>9}"
    print(header + f" {'padding share':>13} {'largest pass':>12}")
    for label, (run_items, batches) in runs.items():
        c = count_positions(embedder, run_items, batches)
        print(
            f"{label:<34} {c.passes:>6} {c.real:>9,} {c.padded:>10,} {c.total:>9,}"
            f" {100 * c.padding_share:>12.1f}% {c.largest:>12,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the embedder (default 1: the loaders use one core too, and on a shared "
        "machine more threads than free cores slow torch down by an order of magnitude)",
    )
    parser.add_argument("--padding-only", action="store_true", help="only the padding share, counted in tokens")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally
    torch.set_num_threads(args.threads)
    if args.padding_only:
        with tempfile.TemporaryDirectory() as tmp:
            padding_report(Path(tmp))
        return
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
        padding_report(tmp_path)


if __name__ == "__main__":
    main()
