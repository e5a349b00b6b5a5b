"""The index manifest (``twn_rag/index/manifest.py``): what the collection records about its
model, dimension and budgets, and the models and vectors it refuses."""

import shutil

import numpy as np
import pytest

from twn_rag import EmbeddingResult
from twn_rag.index import IndexMismatchError, TWNIndex
from twn_rag.index.manifest import IndexManifest, model_fingerprint
from twn_rag.loaders import DocumentItem


def test_collection_metadata_is_scalar_json(index):
    metadata = index._client.get_collection(index.name).metadata
    assert all(isinstance(value, (str, int)) for value in metadata.values())
    manifest = IndexManifest.from_metadata(metadata)
    assert manifest.dimension == index.embedder.dimension
    assert manifest.fingerprint == model_fingerprint(index.embedder) and len(manifest.fingerprint) == 32
    assert manifest.budgets["document"].max_thought_tokens == 4


def test_other_model_or_dimension_is_refused(index, tiny_ckpt, tmp_path, embedder):
    from twn_rag.testing import build_tiny_twn_checkpoint

    # The same checkpoint elsewhere is the same model (compared by fingerprint, not path)...
    moved = tmp_path / "moved-twn"
    shutil.copytree(tiny_ckpt, moved, ignore=shutil.ignore_patterns("backbone"))
    assert TWNIndex.open(index.index_dir, str(moved)).embedder.model_id == str(moved)
    # ...another one (same backbone, other adapters, queries and gate) is not.
    other = build_tiny_twn_checkpoint(tmp_path / "other-twn", backbone_dir=tiny_ckpt / "backbone", seed=1)
    with pytest.raises(IndexMismatchError, match="was built with model .*other weights"):
        TWNIndex.open(index.index_dir, str(other))
    wrong = [EmbeddingResult(np.ones(embedder.dimension + 1, np.float32), None, 0, 0.1)]
    with pytest.raises(IndexMismatchError, match="dimension"):
        index.store([DocumentItem(id="x", text="x", metadata={"source": "x"})], wrong)
    assert index.count() == 0
