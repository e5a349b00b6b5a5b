"""Shared fixtures: tiny offline TWN checkpoints, built once per test session."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The tiny test models gain nothing from intra-op threads, and on a busy 2-core machine two
# OpenMP threads per process made a 128-token generate ~100x slower (0.4 s -> 64 s) than one.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny Qwen3-VL TWN checkpoint directory (released layout, backbone beside it)."""
    from twn_rag.testing import build_tiny_twn_checkpoint

    return build_tiny_twn_checkpoint(tmp_path_factory.mktemp("tiny") / "twn")


@pytest.fixture(scope="session")
def embedder(tiny_ckpt):
    """The tiny TWN loaded in float32 on CPU (exact comparisons need fp32)."""
    from twn_rag import TWNEmbedder

    return TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory):
    from twn_rag.samples import write_sample_video

    return write_sample_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2.0, fps=8)
