"""Fixtures the repository's test suites share (``tests/`` and each ``integrations/*/tests/``):
the tiny offline TWN, built once per session, a counter of its forward passes, and small
documents, images and a Chroma client.

Register it with ``pytest_plugins = ["twn_rag.testing.pytest_plugin"]`` in the top-level
conftest, after setting ``HF_HUB_OFFLINE=1``: huggingface_hub reads that once, when it is
first imported, and importing this plugin imports ``twn_rag`` (and with it huggingface_hub).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twn_rag.samples import make_sample_image, write_sample_video
from twn_rag.testing.checkpoint import build_tiny_twn_checkpoint

# The tiny test models gain nothing from intra-op threads, and on a busy 2-core machine two
# OpenMP threads per process made a 128-token generate ~100x slower (0.4 s -> 64 s) than one.
torch.set_num_threads(1)

_DOCUMENT_TEXTS = (
    "The invoice total is the sum of the line items plus tax.",
    "A red square and a blue circle on a white page.",
    "The video shows a ball moving from the left to the right.",
    "Page one describes the installation, page two the configuration.",
    "What is the capital of France? Paris is the capital of France.",
)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny Qwen3-VL TWN checkpoint directory (released layout, backbone beside it)."""
    return build_tiny_twn_checkpoint(tmp_path_factory.mktemp("tiny") / "twn")


@pytest.fixture(scope="session")
def embedder(tiny_ckpt):
    """The tiny TWN loaded in float32 on CPU (exact comparisons need fp32)."""
    from twn_rag import TWNEmbedder

    return TWNEmbedder.from_pretrained(tiny_ckpt, device="cpu", dtype="float32")


@pytest.fixture
def forward_passes(embedder):
    """Counts the tiny TWN's backbone forward passes while the test runs, as ``{"n": count}``."""
    count = {"n": 0}
    handle = embedder.model._inner_model().register_forward_pre_hook(
        lambda *args: count.__setitem__("n", count["n"] + 1)
    )
    yield count
    handle.remove()


@pytest.fixture
def document_texts() -> list[str]:
    """Five short, distinct documents."""
    return list(_DOCUMENT_TEXTS)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list[Path]:
    """Three distinct PNG files."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed in range(3):
        path = folder / f"image-{seed}.png"
        make_sample_image((64 + 16 * seed, 48), seed=seed).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> Path:
    """A 2 s, 8 fps MP4 clip."""
    return write_sample_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2.0, fps=8)


@pytest.fixture
def chroma_client(tmp_path):
    """An embedded Chroma client persisting under the test's temporary directory."""
    import chromadb

    return chromadb.PersistentClient(path=str(tmp_path / "chroma"))
