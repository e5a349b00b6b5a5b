"""Shared pieces of the benchmarks: the small benchmark model and side-by-side timing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CACHE = Path(os.environ.get("TWN_BENCH_CACHE", ".twn-cache"))
# A "small" Qwen3-VL shape: tens of millions of parameters, minutes on 2 CPU cores.
BENCH_HIDDEN_SIZE = 512
BENCH_LAYERS = 8
# Pages and frames reach the model at up to 256x256 pixels (64 visual tokens).
BENCH_IMAGE_MAX_PIXELS = 256 * 256
BENCH_VIDEO_FPS = 1.0


def bench_checkpoint() -> Path:
    """The benchmark TWN checkpoint (built once under the cache directory, then reused)."""
    from twn_rag.testing import build_tiny_backbone, build_tiny_twn_checkpoint

    target = CACHE / f"bench-twn-h{BENCH_HIDDEN_SIZE}-l{BENCH_LAYERS}-px{BENCH_IMAGE_MAX_PIXELS}"
    if not (target / "gate_mlp.pt").is_file():
        backbone = build_tiny_backbone(
            target / "backbone",
            hidden_size=BENCH_HIDDEN_SIZE,
            num_layers=BENCH_LAYERS,
            image_max_pixels=BENCH_IMAGE_MAX_PIXELS,
            seed=1,
        )
        build_tiny_twn_checkpoint(
            target,
            backbone_dir=backbone,
            num_queries=16,
            gate_hidden=256,
            seed=1,
            max_image_pixels=BENCH_IMAGE_MAX_PIXELS,
            video_fps=BENCH_VIDEO_FPS,
        )
    return target


def side_by_side(a: Callable[[], object], b: Callable[[], object], repeats: int = 7) -> tuple[float, float]:
    """Best (minimum) seconds of ``a`` and ``b`` over ``repeats`` runs, alternated after one
    warm-up each, so that load from other processes on the machine affects both alike and
    the minimum filters its spikes."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times_a), min(times_b)
