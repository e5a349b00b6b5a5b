"""A seeded corpus of damaged and odd files, indexed by one real ``twn-rag index`` run with the
tiny offline model; prints, per kind of file, how many were indexed, partly indexed, failed
with a reason, skipped with a reason, or lost (not reached: the run crashed or hung).

    .venv/bin/python benchmarks/hostile_corpus.py [--seed 0] [--variants 3] [--memory]

``--memory`` also measures the peak memory (max RSS) of indexing a folder with and without a
13000 x 13000 PNG, with the bundled miniature model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from twn_rag.index import TWNIndex
from twn_rag.loaders.files import canonical_source
from twn_rag.loaders.items import utf8_safe
from twn_rag.mini import mini_model_path
from twn_rag.testing import hostile_files as hostile
from twn_rag.testing import make_sample_image, tiny_checkpoint, write_sample_pdf, write_sample_video, write_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CACHE = Path(os.environ.get("TWN_BENCH_CACHE", ".twn-cache"))
RUN_TIMEOUT_S = 900
OUTCOMES = ("indexed", "partly indexed", "failed", "skipped", "lost")
REASON_WIDTH = 70

Writer = Callable[[Path, random.Random], Path]


# -- damage ----------------------------------------------------------------------------------
def truncated(data: bytes, rng: random.Random) -> bytes:
    return data[: int(len(data) * rng.uniform(0.1, 0.9))]


def bit_flipped(data: bytes, rng: random.Random, flips: int = 24) -> bytes:
    damaged = bytearray(data)
    for _ in range(flips):
        damaged[rng.randrange(64, len(damaged))] ^= 1 << rng.randrange(8)  # past the magic bytes
    return bytes(damaged)


def zeroed(data: bytes, rng: random.Random, run: int = 256) -> bytes:
    start = rng.randrange(0, max(len(data) - run, 1))
    return data[:start] + bytes(min(run, len(data) - start)) + data[start + run :]


def header_only(data: bytes, rng: random.Random) -> bytes:
    return data[:64]


def _damaged(make: Callable[[Path], Path], damage) -> Writer:
    def write(path: Path, rng: random.Random) -> Path:
        make(path)
        path.write_bytes(damage(path.read_bytes(), rng))
        return path

    return write


# -- writers by kind ---------------------------------------------------------------------------
def _pdf(path: Path) -> Path:
    return write_sample_pdf(path, 3)


def _blank_pdf(size: tuple[float, float]) -> Writer:
    """A one-page PDF of no content and ``size`` points (fpdf cannot lay out text that small)."""

    def write(path: Path, rng: random.Random) -> Path:
        import pypdfium2 as pdfium

        document = pdfium.PdfDocument.new()
        document.new_page(*size)
        document.save(str(path))
        document.close()
        return path

    return write


def _mp4(path: Path) -> Path:
    return write_sample_video(path, seconds=2.0, fps=8)


def _png(path: Path) -> Path:
    make_sample_image((120, 90), seed=1).save(path)
    return path


def _jpg(path: Path) -> Path:
    make_sample_image((120, 90), seed=2).save(path, quality=85)
    return path


def _webm(path: Path, rng: random.Random) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libvpx", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(16):
            pixels = np.full((48, 64, 3), 16 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _audio_only(path: Path, rng: random.Random) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16_000)
        samples = (np.sin(np.arange(16_000) / 10) * 0.3).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def _single_frame(path: Path, rng: random.Random) -> Path:
    return write_video(path, [np.full((48, 64, 3), 200, dtype=np.uint8)], 8)


def _mkv_cut_tail(path: Path, rng: random.Random) -> Path:
    write_sample_video(path, seconds=4.0, fps=8)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * rng.uniform(0.4, 0.8))])
    return path


def _large_png(path: Path, rng: random.Random, side: int = 13_000) -> Path:
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for offset in range(0, side, 1000):
        draw.rectangle([offset, offset, offset + 400, offset + 400], fill=(200, 30, 30))
    image.save(path, compress_level=9)
    return path


def _gif(path: Path, rng: random.Random) -> Path:
    frames = [make_sample_image((64, 48), seed=s).convert("P") for s in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def _webp(path: Path, rng: random.Random) -> Path:
    make_sample_image((64, 48), seed=4).save(path, format="WEBP")
    return path


def _as(make: Callable[[Path], Path], suffix: str) -> Writer:
    """A file of one format under another extension."""

    def write(path: Path, rng: random.Random) -> Path:
        made = make(path.with_suffix(suffix))
        made.rename(path)
        return path

    return write


def _named(raw_name: bytes, make: Callable[[Path], Path]) -> Writer:
    def write(path: Path, rng: random.Random) -> Path:
        return make(Path(os.fsdecode(os.fsencode(path.parent) + b"/" + raw_name)))

    return write


def _dir_loop(path: Path, rng: random.Random) -> Path:
    path.mkdir()
    os.symlink("..", path / "parent")
    return path / "parent"


def _plain(make: Callable[[Path], Path]) -> Writer:
    return lambda path, rng: make(path)


# kind -> (file name, writer, seeded: one file per variant)
KINDS: dict[str, tuple[str, Writer, bool]] = {
    "pdf: good": ("good.pdf", _plain(_pdf), False),
    "pdf: truncated": ("truncated.pdf", _damaged(_pdf, truncated), True),
    "pdf: bit-flipped": ("flipped.pdf", _damaged(_pdf, bit_flipped), True),
    "pdf: zeroed run": ("zeroed.pdf", _damaged(_pdf, zeroed), True),
    "pdf: header only": ("header.pdf", _damaged(_pdf, header_only), False),
    "pdf: empty": ("empty.pdf", _plain(lambda p: (p.write_bytes(b""), p)[1]), False),
    "pdf: encrypted": ("encrypted.pdf", _plain(lambda p: write_sample_pdf(p, ["secret"], password="pw")), False),
    "pdf: a PNG named .pdf": ("image.pdf", _as(_png, ".png"), False),
    "pdf: 500:1 page": ("wide.pdf", _plain(hostile.write_wide_pdf), False),
    "pdf: 14400x14400 pt page": ("huge.pdf", _plain(lambda p: write_sample_pdf(p, 1, page_size=(14400, 14400))), False),
    "pdf: 1x1 pt blank page": ("speck.pdf", _blank_pdf((1, 1)), False),
    "pdf: 0x0 pt blank page": ("zero-page.pdf", _blank_pdf((0, 0)), False),
    "pdf: 200 pages": ("long.pdf", _plain(lambda p: write_sample_pdf(p, 200)), False),
    "video: good mp4": ("good.mp4", _plain(_mp4), False),
    "video: truncated mp4": ("truncated.mp4", _damaged(_mp4, truncated), True),
    "video: bit-flipped mp4": ("flipped.mp4", _damaged(_mp4, bit_flipped), True),
    "video: header-only mp4": ("header.mp4", _damaged(_mp4, header_only), False),
    "video: text named .mp4": ("text.mp4", _plain(lambda p: (p.write_text("not a video\n"), p)[1]), False),
    "video: mkv cut mid-way": ("cut.mkv", _mkv_cut_tail, True),
    "video: webm (vp8)": ("good.webm", _webm, False),
    "video: one frame": ("one-frame.mp4", _single_frame, False),
    "video: audio only": ("audio.mp4", _audio_only, False),
    "video: 256:1 frames": ("wide.mp4", _plain(hostile.write_wide_video), False),
    "image: good png": ("good.png", _plain(_png), False),
    "image: good jpeg": ("good.jpg", _plain(_jpg), False),
    "image: truncated png": ("truncated.png", _damaged(_png, truncated), True),
    "image: truncated jpeg": ("truncated.jpg", _damaged(_jpg, truncated), True),
    "image: bit-flipped jpeg": ("flipped.jpg", _damaged(_jpg, bit_flipped), True),
    "image: PNG bomb 30000^2": ("bomb.png", _plain(hostile.write_png_bomb), False),
    "image: JPEG bomb 65000^2": ("bomb.jpg", _plain(hostile.write_jpeg_bomb), False),
    "image: 13000^2 PNG": ("large.png", _large_png, False),
    "image: 10000x20": ("wide.png", _plain(hostile.write_wide_image), False),
    "image: 20x10000": ("tall.png", _plain(lambda p: hostile.write_wide_image(p, (20, 10_000))), False),
    "image: 1x1": ("dot.png", _plain(lambda p: (Image.new("RGB", (1, 1), "red").save(p), p)[1]), False),
    "image: animated gif": ("anim.gif", _gif, False),
    "image: webp": ("good.webp", _webp, False),
    "image: a PDF named .png": ("doc.png", _as(_pdf, ".pdf"), False),
    "hazard: symlink loop": ("loop.pdf", _plain(lambda p: hostile.make_symlink_loop(p.parent, p.name)), False),
    "hazard: folder link loop": ("subdir", _dir_loop, False),
    "hazard: FIFO named .pdf": ("pipe.pdf", _plain(hostile.make_fifo), False),
    "hazard: /dev/zero named .mp4": ("zero.mp4", _plain(hostile.link_to_device), False),
    "hazard: dangling link": ("dangling.pdf", _plain(lambda p: (os.symlink("gone.pdf", p), p)[1]), False),
    "name: not UTF-8": (
        "-",
        _plain(lambda p: write_sample_pdf(hostile.undecodable_name(p.parent), ["latin-1"])),
        False,
    ),
    "name: newline": ("-", _named(b"line\nbreak.pdf", _pdf), False),
    "name: tab and escape": ("-", _named(b"tab\tesc\x1b[31m.pdf", _pdf), False),
    "name: 250 bytes": ("-", _named(b"n" * 246 + b".pdf", _pdf), False),
    "name: unsupported type": ("notes.xyz", _plain(lambda p: (p.write_text("notes"), p)[1]), False),
}


def write_corpus(root: Path, seed: int, variants: int) -> dict[str, list[Path]]:
    """Every kind in its own folder under ``root``; returns kind -> the paths written."""
    rng = random.Random(seed)
    corpus: dict[str, list[Path]] = {}
    for number, (kind, (name, writer, seeded)) in enumerate(KINDS.items()):
        paths = []
        for variant in range(variants if seeded else 1):
            folder = root / f"{number:02d}-v{variant}"
            folder.mkdir(parents=True)
            paths.append(writer(folder / name, random.Random(rng.random())))
        corpus[kind] = paths
    return corpus


# -- one real run, then each file's outcome ------------------------------------------------------
def run_index(root: Path, index_dir: Path, model: Path) -> tuple[int | None, dict, float]:
    """``twn-rag index --json`` over ``root``: (exit code or ``None`` on timeout, report, seconds)."""
    command = [sys.executable, "-m", "twn_rag.cli", "index", str(root), "--index", str(index_dir)]
    command += ["--model", str(model), "--json"]
    started = time.perf_counter()
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, {}, time.perf_counter() - started
    seconds = time.perf_counter() - started
    report = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    return run.returncode, report, seconds


def outcome(path: Path, report: dict, stored: dict[str, bool]) -> tuple[str, str]:
    """(outcome, reason) of one corpus file, from the run's report and the stored records."""
    key = utf8_safe(str(path))
    failures = {f["path"]: f["reason"] for f in report.get("failures", [])}
    skipped = {s["path"]: s["reason"] for s in report.get("skipped", [])}
    if key in skipped:
        return "skipped", skipped[key]
    try:
        source = canonical_source(path)
    except (OSError, RuntimeError):
        source = key
    if key in failures:
        return ("partly indexed" if source in stored else "failed"), failures[key]
    if stored.get(source):
        return "indexed", ""
    return "lost", "not reached: the run stopped before it"


def stored_sources(index_dir: Path) -> dict[str, bool]:
    """Source -> whether its last item is stored (the file is complete)."""
    index = TWNIndex.open(index_dir)
    complete: dict[str, bool] = {}
    for _, metadata in index._iter_metadatas():
        source = str(metadata["source"])
        complete[source] = complete.get(source, False) or bool(metadata.get("last_in_file"))
    return complete


def print_table(corpus: dict[str, list[Path]], report: dict, stored: dict[str, bool]) -> dict[str, int]:
    totals = dict.fromkeys(OUTCOMES, 0)
    print("| kind | files | " + " | ".join(OUTCOMES) + " | reason (first) |")
    print("| --- | --- |" + " --- |" * len(OUTCOMES) + " --- |")
    for kind, paths in corpus.items():
        counts = dict.fromkeys(OUTCOMES, 0)
        reasons = []
        for path in paths:
            result, reason = outcome(path, report, stored)
            counts[result] += 1
            if reason:
                reasons.append(reason)
        for name, count in counts.items():
            totals[name] += count
        reason = reasons[0] if reasons else ""
        reason = reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 3] + "..."
        cells = " | ".join(str(counts[name] or "") for name in OUTCOMES)
        print(f"| {kind} | {len(paths)} | {cells} | {reason.replace('|', '/')} |")
    cells = " | ".join(f"**{totals[name]}**" for name in OUTCOMES)
    print(f"| **all** | **{sum(len(p) for p in corpus.values())}** | {cells} | |")
    return totals


# -- peak memory of the 13000 x 13000 PNG ---------------------------------------------------------
# Run from a small parent: Linux keeps the memory high-water mark of the process image an
# exec replaces, so a child of this (large) process would report at least this one's size.
_MAX_RSS_LAUNCHER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mb(folder: Path, index_dir: Path, model: Path) -> float:
    """Max RSS of one ``twn-rag index`` process over ``folder``, in MB."""
    command = [sys.executable, "-m", "twn_rag.cli", "index", str(folder), "--index", str(index_dir)]
    launcher = [sys.executable, "-S", "-c", _MAX_RSS_LAUNCHER, *command, "--model", str(model)]
    out = subprocess.run(launcher, capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT_S)
    return int(out.stdout) / 1024


def measure_memory(root: Path, repeats: int = 3) -> None:
    """Peak memory of indexing a 2-page PDF alone and beside a 13000 x 13000 PNG, each the
    least of ``repeats`` runs (alternated), since allocator arenas vary it by ~100 MB."""
    folders = {}
    for label, with_png in (("alone", False), ("with the PNG", True)):
        folder = root / f"memory-{len(folders)}"
        folder.mkdir()
        write_sample_pdf(folder / "doc.pdf", 2)
        if with_png:
            _large_png(folder / "large.png", random.Random(0))
        folders[label] = folder
    peaks: dict[str, list[float]] = {label: [] for label in folders}
    for run in range(repeats):
        for label, folder in folders.items():
            peaks[label].append(peak_rss_mb(folder, root / f"index-{folder.name}-{run}", mini_model_path()))
    print(f"\npeak memory (max RSS, least of {repeats}) of `twn-rag index` with the bundled miniature model:")
    for label, values in peaks.items():
        print(f"- a 2-page PDF {label}: {min(values):.0f} MB (runs: {', '.join(f'{v:.0f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=int, default=3, help="Files per seeded kind (cuts, bit flips).")
    parser.add_argument("--memory", action="store_true", help="Also measure peak memory of the 13000^2 PNG.")
    args = parser.parse_args()
    model = tiny_checkpoint(CACHE / "tiny")
    with tempfile.TemporaryDirectory(prefix="twn-hostile-") as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "corpus", args.seed, args.variants)
        code, report, seconds = run_index(root / "corpus", root / "index", model)
        stored = stored_sources(root / "index") if (root / "index").exists() else {}
        files = sum(len(paths) for paths in corpus.values())
        print(f"seed {args.seed}: {files} files of {len(corpus)} kinds, one `twn-rag index` run with the tiny model:")
        print(f"exit code {code if code is not None else 'none (timed out)'}, {seconds:.0f} s\n")
        print_table(corpus, report, stored)
        if report.get("error"):
            print(f"\nthe run stopped: {report['error']}")
        if args.memory:
            measure_memory(root)


if __name__ == "__main__":
    main()
