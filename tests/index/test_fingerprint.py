"""The index's model fingerprint: what made its vectors, compared component by component."""

import hashlib
import json
import shutil

import pytest
import torch

from twn_rag import TWNEmbedder
from twn_rag.index import IndexMismatchError, TWNIndex
from twn_rag.index.budget_store import COMMITS_KEY, VERSION_KEY
from twn_rag.index.fingerprint import LEGACY, ModelFingerprint
from twn_rag.index.manifest import FINGERPRINT_KEY, FORMAT_KEY, IndexManifest
from twn_rag.modeling import EMBEDDING_ADAPTER, REASONING_ADAPTER


def _load(checkpoint, **kwargs) -> TWNEmbedder:
    return TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype=kwargs.pop("dtype", "float32"), **kwargs)


def _copy(tiny_ckpt, target):
    """The checkpoint elsewhere, its backbone still the original (named by absolute path)."""
    return shutil.copytree(tiny_ckpt, target, ignore=shutil.ignore_patterns("backbone"))


def _retrain_in_place(checkpoint, *parts: str, seed: int = 1) -> None:
    """Nudge the weights of ``parts`` (adapter names, "gate") as training would, and save the
    checkpoint over itself; everything else stays as it was."""
    embedder = _load(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for part in parts:
            params = (
                embedder.model.gate.parameters() if part == "gate" else embedder.model.adapter_parameters(part).values()
            )
            for param in params:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    embedder.save_pretrained(checkpoint)


def _stored_metadata(index) -> dict:
    return dict(index._client.get_collection(index.name).metadata)


@pytest.fixture
def index(tmp_path, embedder):
    return TWNIndex.open(tmp_path / "index", embedder)


def test_retrained_embedding_adapter_is_refused_naming_it(index, tiny_ckpt, tmp_path):
    retrained = _copy(tiny_ckpt, tmp_path / "retrained")
    _retrain_in_place(retrained, EMBEDDING_ADAPTER)
    model = _load(retrained)
    # The bug this fixes: queries and gate unchanged, so the format-1 digest could not tell them apart.
    assert ModelFingerprint.of(model, [LEGACY]) == ModelFingerprint.of(index.embedder, [LEGACY])
    with pytest.raises(IndexMismatchError, match=r"other weights: the embedding adapter differs\)") as refused:
        TWNIndex.open(index.index_dir, model)
    assert "backbone" not in str(refused.value) and "queries" not in str(refused.value)


def test_retrained_backbone_is_refused_naming_it(index, tiny_ckpt, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    tuned = tmp_path / "tuned-backbone"
    backbone = AutoModelForImageTextToText.from_pretrained(str(tiny_ckpt / "backbone"), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fine-tune's size of change: about 0.1% of each weight
        for param in backbone.parameters():
            param.mul_(1 + 1e-3 * torch.randn(param.shape, generator=generator))
    backbone.save_pretrained(str(tuned))
    AutoProcessor.from_pretrained(str(tiny_ckpt / "backbone")).save_pretrained(str(tuned))
    with pytest.raises(IndexMismatchError, match=r"other weights: the backbone differs\)"):
        TWNIndex.open(index.index_dir, _load(tiny_ckpt, base_model=tuned))


def test_other_instructions_are_refused_naming_them(index, tiny_ckpt, tmp_path):
    edited = _copy(tiny_ckpt, tmp_path / "edited")
    config = json.loads((edited / "twn_config.json").read_text())
    config["instructions"] = {**config["instructions"], "document": "Represent the page for search."}
    (edited / "twn_config.json").write_text(json.dumps(config))
    with pytest.raises(IndexMismatchError, match="the embedding instructions differ"):
        TWNIndex.open(index.index_dir, _load(edited))


def test_moved_copy_in_another_dtype_is_the_same_model(index, tiny_ckpt, tmp_path):
    moved = shutil.copytree(tiny_ckpt, tmp_path / "elsewhere" / "twn")
    # Checkpoint and backbone both read from the copy, the backbone in bfloat16.
    copy = _load(moved, base_model=moved / "backbone", dtype="bfloat16")
    assert copy.model.dtype == torch.bfloat16
    assert ModelFingerprint.of(copy) == ModelFingerprint.of(index.embedder)
    assert TWNIndex.open(index.index_dir, copy).embedder is copy


def test_retrained_gate_and_reasoning_adapter_keep_the_index(index, tiny_ckpt, tmp_path):
    """They decide which inputs think and what they think, not where a vector lands."""
    retrained = _copy(tiny_ckpt, tmp_path / "retrained")
    _retrain_in_place(retrained, "gate", REASONING_ADAPTER)
    model = _load(retrained)
    assert ModelFingerprint.of(model, [LEGACY]) != ModelFingerprint.of(index.embedder, [LEGACY])
    assert TWNIndex.open(index.index_dir, model).embedder is model


def _format_1_digest(embedder) -> str:
    """The fingerprint as twn-rag wrote it in format 1 (restated here as the stored contract)."""
    digest = hashlib.sha256()
    for name, tensor in [("queries", embedder.model.queries), *sorted(embedder.model.gate.state_dict().items())]:
        data = tensor.detach().float().cpu().numpy()
        digest.update(f"{name}:{data.shape}|".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()[:32]


def _make_format_1(index) -> None:
    """Rewrite the index's metadata as a format-1 index stored it."""
    metadata = _stored_metadata(index)
    metadata.update({FORMAT_KEY: 1, FINGERPRINT_KEY: _format_1_digest(index.embedder)})
    index._collection.modify(metadata=metadata)


def test_format_1_index_opens_with_its_model_and_records_the_components(index, embedder, tiny_ckpt, tmp_path):
    _make_format_1(index)
    before = _stored_metadata(index)

    # Opened without a model, it stays format 1 (readable by the twn-rag that wrote it)...
    lazy = TWNIndex.open(index.index_dir)
    assert lazy.manifest.identity.is_legacy
    lazy.set_budget("query", lazy.budget("query"))
    assert _stored_metadata(lazy)[FORMAT_KEY] == 1
    # ...until its model is loaded and checked by the format-1 digest: then the components are recorded.
    assert lazy.embedder.model_id == str(tiny_ckpt)
    after = _stored_metadata(lazy)
    assert after[FORMAT_KEY] == 2 and json.loads(after[FINGERPRINT_KEY]) == ModelFingerprint.of(embedder).components
    changed = (FORMAT_KEY, FINGERPRINT_KEY, VERSION_KEY, COMMITS_KEY)  # and the budget store's commit log
    assert {k: v for k, v in after.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}
    assert (
        IndexManifest.from_metadata(after).fingerprint == TWNIndex.open(index.index_dir, embedder).manifest.fingerprint
    )

    # Once recorded, a retrained embedding adapter is refused by name.
    retrained = _copy(tiny_ckpt, tmp_path / "retrained")
    _retrain_in_place(retrained, EMBEDDING_ADAPTER)
    with pytest.raises(IndexMismatchError, match="the embedding adapter differs"):
        TWNIndex.open(index.index_dir, _load(retrained))


def test_format_1_index_refuses_another_model_by_its_digest(index, tiny_ckpt, tmp_path):
    _make_format_1(index)
    retrained = _copy(tiny_ckpt, tmp_path / "retrained")
    _retrain_in_place(retrained, "gate")
    with pytest.raises(
        IndexMismatchError,
        match=r"other weights: the queries-and-gate digest \(all an older twn-rag recorded\) differs\)",
    ):
        TWNIndex.open(index.index_dir, _load(retrained))
    assert _stored_metadata(index)[FORMAT_KEY] == 1  # nothing recorded for a refused model


def test_unknown_format_asks_for_a_newer_twn_rag(index):
    index._collection.modify(metadata={**_stored_metadata(index), FORMAT_KEY: 3})
    with pytest.raises(IndexMismatchError, match="index format 3 is not supported .*upgrade twn-rag"):
        TWNIndex.open(index.index_dir)
