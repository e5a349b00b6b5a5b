"""Fixtures of the core package's tests; the shared ones (tiny checkpoint, embedder) come from
``twn_rag.testing.pytest_plugin``, registered in the repository's ``conftest.py``."""

from __future__ import annotations

import pytest

from twn_rag.samples import write_sample_video


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory):
    return write_sample_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=2.0, fps=8)
