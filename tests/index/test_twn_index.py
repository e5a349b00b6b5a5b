"""``TWNIndex`` (``twn_rag/index/twn_index.py``): adding files, searching, info, deleting,
re-runs, resumes, budgets across reopening, damaged files and video clips."""

import shutil

import numpy as np
import pytest
from support.long_text import long_page_text

from twn_rag import ReasoningBudget
from twn_rag.index import IndexMismatchError, IndexNotFoundError, TWNIndex
from twn_rag.loaders import FileRef, iter_file_items
from twn_rag.result_metadata import (
    RESULT_METADATA_KEYS,
    TEXT_TOKENS_ORIGINAL_KEY,
    TEXT_TRUNCATED_KEY,
    TEXT_TRUNCATION_KEYS,
    THOUGHT_KEY,
    THOUGHT_USED_KEY,
)
from twn_rag.samples import make_sample_image, write_sample_pdf


@pytest.fixture(scope="module")
def docs(tmp_path_factory, sample_video):
    folder = tmp_path_factory.mktemp("docs")
    write_sample_pdf(folder / "manual.pdf", ["Install the tool.", "Configure the budget.", "A red square."])
    shutil.copy(sample_video, folder / "clip.mp4")
    make_sample_image((80, 60), seed=5).save(folder / "figure.png")
    (folder / "notes.xyz").write_text("not indexed")
    return folder


def _expected_ids(index, *paths):
    ids = set()
    for path in paths:
        ids |= {item.id for item in iter_file_items(FileRef.describe(path), index.manifest.loader)}
    return ids


def _all_records(index):
    return index._collection.get(include=["metadatas"])


def test_add_search_info_delete(index, docs):
    report = index.add([docs])
    assert report.ok and report.files_indexed == 3 and report.items_added == 3 + 4 + 1
    assert [s.path.endswith("notes.xyz") for s in report.skipped] == [True]
    records = _all_records(index)
    assert set(records["ids"]) == _expected_ids(index, docs / "manual.pdf", docs / "clip.mp4", docs / "figure.png")
    for metadata in records["metadatas"]:
        assert {"source", "modality", "content_hash", *RESULT_METADATA_KEYS} <= set(metadata)
        assert all(isinstance(v, (str, int, float, bool)) for v in metadata.values())
        assert ("page" in metadata) != ("timestamp" in metadata) or metadata["source_type"] == "image"
    # Rendered pages and frames are files under the index directory; the image file is the original.
    images = sorted(p.name for p in index.images_dir.iterdir())
    assert len(images) == 3 + 4 and all(name.endswith((".png", ".jpg")) for name in images)

    hits = index.search("Configure the budget.", k=20)
    assert len(hits) == 8 and hits == sorted(hits, key=lambda h: -h.score)
    [again] = index.embedder.encode(["Configure the budget."], role="query", budget=ReasoningBudget(mode="never"))
    assert index.last_query is not None and index.last_query.gate_score == pytest.approx(again.gate_score, abs=1e-5)
    by_source = {h.source.split("/")[-1] for h in hits}
    assert by_source == {"manual.pdf", "clip.mp4", "figure.png"}
    for hit in hits:
        assert hit.image_path is not None and shutil.os.path.exists(hit.image_path)
        assert (hit.page is not None) == hit.source.endswith(".pdf")
        assert (hit.timestamp is not None) == hit.source.endswith(".mp4")
        assert -1.0 <= hit.score <= 1.0 + 1e-6
    page_hit = next(h for h in hits if h.page == 2)
    assert page_hit.text == "Configure the budget." and page_hit.modality == "text+image"
    # Search by image: hits ranked by cosine similarity between the query's TWN vector and the
    # stored vectors (recomputed here independently).
    by_image = index.search(image=page_hit.image_path, k=3)
    [query] = index.embedder.encode([{"image": page_hit.image_path}], role="query", budget=index.budget("query"))
    stored = index._collection.get(include=["embeddings"])
    similarity = np.asarray(stored["embeddings"]) @ query.vector
    best = np.argsort(-similarity)[:3]
    assert [h.id for h in by_image] == [stored["ids"][i] for i in best]
    np.testing.assert_allclose([h.score for h in by_image], similarity[best], atol=1e-4)

    info = index.info()
    assert info.items == 8 and info.sources == 3 and info.dimension == index.embedder.dimension
    assert info.modalities == {"image": 5, "text+image": 3}
    assert info.budgets["document"].ledger.items_seen == 8 and info.budgets["query"].ledger.items_seen == 2
    assert index.budget("query").ledger.items_seen == 2  # searches record their spend too

    assert index.delete_source(docs / "manual.pdf") == 3
    assert index.count() == 5 and len(list(index.images_dir.iterdir())) == 4
    assert (docs / "figure.png").exists()  # the user's image is never deleted
    assert index.delete_source(docs / "figure.png") == 1 and (docs / "figure.png").exists()


def test_rerun_writes_nothing_and_changed_file_replaces_old_items(index, tmp_path):
    pdf = write_sample_pdf(tmp_path / "doc.pdf", ["one", "two", "three"])
    assert index.add([pdf]).items_added == 3
    seen = index.budget("document").ledger.items_seen
    again = index.add([pdf])
    assert (again.files_unchanged, again.items_added, again.items_removed) == (1, 0, 0)
    assert index.budget("document").ledger.items_seen == seen  # nothing embedded
    old_ids = set(_all_records(index)["ids"])

    write_sample_pdf(pdf, ["one", "two changed"])
    changed = index.add([pdf])
    assert (changed.files_indexed, changed.items_added, changed.items_removed) == (1, 2, 3)
    records = _all_records(index)
    assert set(records["ids"]) == _expected_ids(index, pdf) and not set(records["ids"]) & old_ids
    assert len(list(index.images_dir.iterdir())) == 2  # old renders removed


def test_an_interrupted_file_is_resumed_without_re_embedding(index, tmp_path):
    pdf = write_sample_pdf(tmp_path / "long.pdf", 7)
    index.add([pdf], chunk_size=3)
    ids = sorted(_all_records(index)["ids"])
    # As after a kill: the last chunk (pages 7) and one more page never reached the store.
    index._collection.delete(ids=ids[-2:])
    seen = index.budget("document").ledger.items_seen
    report = index.add([pdf], chunk_size=3)
    assert report.items_added == 2 and report.files_indexed == 1
    assert sorted(_all_records(index)["ids"]) == ids
    assert index.budget("document").ledger.items_seen == seen + 2
    flagged = [m["page"] for m in _all_records(index)["metadatas"] if m["last_in_file"]]
    assert flagged == [7]


def test_budget_is_stored_and_enforced_across_reopen(tmp_path, embedder, docs):
    embedder.thought_cache.clear()
    budget = ReasoningBudget(mode="always", max_thought_tokens=4, token_budget=8)
    first = TWNIndex.open(tmp_path / "idx", embedder, document_budget=budget)
    first.add([docs / "clip.mp4"])
    spent = first.budget("document").ledger
    assert spent.items_thought == 2 and 0 < spent.thought_tokens <= 8

    reopened = TWNIndex.open(tmp_path / "idx")  # no model given: the stored one, loaded lazily
    stored = reopened.budget("document")
    assert (stored.mode, stored.token_budget, stored.ledger) == ("always", 8, spent)
    reopened.add([docs / "manual.pdf"])
    after = reopened.budget("document").ledger
    assert after.items_thought == 2 and after.thought_tokens == spent.thought_tokens  # budget exhausted
    assert after.items_seen == 4 + 3
    thoughts = [m for m in _all_records(reopened)["metadatas"] if m[THOUGHT_USED_KEY]]
    assert len(thoughts) == 2 and all(m["source"].endswith("clip.mp4") for m in thoughts)
    # items(where=...) lists the stored records that thought, with their thoughts
    thought = reopened.items(where={THOUGHT_USED_KEY: True})
    assert sorted(h.thought for h in thought) == sorted(m[THOUGHT_KEY] for m in thoughts)
    assert all(h.source.endswith("clip.mp4") and h.timestamp is not None and np.isnan(h.score) for h in thought)
    assert len(reopened.items()) == reopened.count() == 7

    # New limits apply from now on; the spend is kept.
    raised = reopened.set_budget("document", ReasoningBudget(mode="always", max_thought_tokens=4, token_budget=100))
    assert raised.ledger == after and TWNIndex.open(tmp_path / "idx").budget("document").token_budget == 100


def test_opening_a_missing_index_without_a_model_fails_clearly(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no twn-rag index"):
        TWNIndex.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(ValueError, match="collection name 'ab' is not valid"):
        TWNIndex.open(tmp_path / "nothing", collection="ab")


def test_damage_part_way_keeps_the_pages_before_it(index, tmp_path, monkeypatch):
    """A file that fails after some items: those items are stored with their spend recorded,
    the file is reported, and it is not marked complete (the next run tries it again)."""
    from twn_rag.loaders import dispatch
    from twn_rag.loaders.items import LoadError
    from twn_rag.loaders.pdf import iter_pdf_pages

    def pages_then_damage(ref, settings):
        for item in iter_pdf_pages(ref, settings):
            if item.metadata["page"] == 4:
                raise LoadError(ref.path, "page 4 cannot be read (damaged stream)")
            yield item

    monkeypatch.setitem(dispatch.LOADERS, "pdf", pages_then_damage)
    pdf = write_sample_pdf(tmp_path / "damaged.pdf", 6)
    report = index.add([pdf], batch_size=2, chunk_size=4)
    assert [(f.path, f.reason) for f in report.failures] == [(str(pdf), "page 4 cannot be read (damaged stream)")]
    records = _all_records(index)
    assert sorted(m["page"] for m in records["metadatas"]) == [1, 2, 3]
    assert not any(m["last_in_file"] for m in records["metadatas"])
    assert index.budget("document").ledger.items_seen == 3
    assert index.add([pdf]).failures  # not taken for complete: read again, fails again


def test_video_clips_are_indexed_as_one_item_each(tmp_path, embedder, sample_video):
    from twn_rag.loaders import LoaderSettings

    clips = LoaderSettings(max_image_pixels=4096, video_fps=4.0, clip_frames=4)
    index = TWNIndex.open(tmp_path / "clips", embedder, loader_settings=clips)
    assert index.add([sample_video]).items_added == 2
    hits = index.search("a ball moving to the right", k=5)
    assert [h.modality for h in hits] == ["video", "video"]
    assert sorted(h.timestamp for h in hits) == [0.0, 1.0]
    assert sorted(h.metadata["end_timestamp"] for h in hits) == [0.75, 1.75]
    assert all(h.image_path.endswith(".jpg") for h in hits)  # first frame, as a thumbnail
    with pytest.raises(IndexMismatchError, match="samples documents with"):
        TWNIndex.open(tmp_path / "clips", loader_settings=LoaderSettings(max_image_pixels=4096, clip_frames=2))


def test_a_page_with_a_huge_text_layer_is_cut_and_the_record_says_so(tmp_path, embedder):
    # A tall page, so the whole text layer fits on it (the loader reads text within the page).
    pdf = write_sample_pdf(tmp_path / "long.pdf", [long_page_text(40_000), "A short page."], page_size=(612.0, 5400.0))
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=ReasoningBudget(mode="never"))
    with pytest.raises(ValueError, match="max_batch_tokens"):
        index.add([pdf], max_batch_tokens=0)  # before any work
    passes = []
    hook = embedder.model._inner_model().register_forward_pre_hook(lambda *_: passes.append(1))
    try:
        report = index.add([pdf])
        assert report.ok and report.items_added == 2 and len(passes) == 1  # both pages in one batch
        other = TWNIndex.open(tmp_path / "other", embedder, document_budget=ReasoningBudget(mode="never"))
        assert other.add([pdf], max_batch_tokens=2500).ok and len(passes) == 1 + 2  # the long page alone
    finally:
        hook.remove()
    records = index._collection.get(include=["metadatas", "documents"])
    by_page = {m["page"]: (m, d) for m, d in zip(records["metadatas"], records["documents"])}
    long_page, long_text = by_page[1]
    assert long_page[TEXT_TRUNCATED_KEY] is True
    assert long_page[TEXT_TOKENS_ORIGINAL_KEY] == embedder.processor.text_tokens(long_text)
    assert long_page[TEXT_TOKENS_ORIGINAL_KEY] > embedder.config.max_input_tokens  # the checkpoint's cap
    assert len(long_text) == 40_000  # the record keeps the whole text layer: only the vector saw the cut
    assert not set(TEXT_TRUNCATION_KEYS) & set(by_page[2][0])
    [hit] = index.search("the invoice total", k=2, where={TEXT_TRUNCATED_KEY: True})
    assert hit.page == 1 and hit.metadata[TEXT_TOKENS_ORIGINAL_KEY] == long_page[TEXT_TOKENS_ORIGINAL_KEY]
