"""Fixtures shared by the LlamaIndex and LangChain integration tests."""

from __future__ import annotations

import pytest

from twn_rag.samples import make_sample_image

_DOCUMENT_TEXTS = (
    "The invoice total is the sum of the line items plus tax.",
    "A red square and a blue circle on a white page.",
    "The video shows a ball moving from the left to the right.",
    "Page one describes the installation, page two the configuration.",
    "What is the capital of France? Paris is the capital of France.",
)


@pytest.fixture
def document_texts() -> list[str]:
    """Five short, distinct documents."""
    return list(_DOCUMENT_TEXTS)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list:
    """Three distinct PNG files."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed in range(3):
        path = folder / f"image-{seed}.png"
        make_sample_image((64 + 16 * seed, 48), seed=seed).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def chroma_client(tmp_path):
    """An embedded Chroma client persisting under the test's temporary directory."""
    import chromadb

    return chromadb.PersistentClient(path=str(tmp_path / "chroma"))
