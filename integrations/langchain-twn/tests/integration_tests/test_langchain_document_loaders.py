"""``langchain_twn.TWNLoader`` on generated PDFs (up to 300 pages) and videos: documents, stable
ids, absolute image paths, and a ``lazy_load`` that streams one page at a time."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document
from langchain_twn import TWNLoader
from PIL import Image

from twn_rag.loaders import DocumentItem, FileRef, LoadError, LoaderSettings, iter_file_items
from twn_rag.loaders.saved import default_image_dir
from twn_rag.samples import write_sample_pdf

SMALL = LoaderSettings(max_image_pixels=64 * 64, video_fps=2.0)


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    return write_sample_pdf(tmp_path_factory.mktemp("pdf") / "manual.pdf", 3)


def test_pages_become_documents_with_item_ids_and_absolute_image_paths(pdf, tmp_path):
    items = list(iter_file_items(FileRef.describe(pdf), SMALL))
    loader = TWNLoader(pdf, image_dir=tmp_path / "images", settings=SMALL)
    assert isinstance(loader, BaseLoader)
    documents = loader.load()
    assert all(isinstance(d, Document) for d in documents)
    assert [d.id for d in documents] == [item.id for item in items]
    assert [d.page_content for d in documents] == [item.text for item in items]
    for number, document in enumerate(documents, start=1):
        image = Path(document.metadata["image_path"])
        assert image.is_absolute() and image.is_file() and image.parent == (tmp_path / "images").resolve()
        with Image.open(image) as saved:
            assert saved.width * saved.height <= SMALL.max_image_pixels
        assert document.metadata["page"] == number and document.metadata["page_count"] == 3
        assert document.metadata["source"] == str(pdf.resolve())


def test_ids_are_stable_across_loads_and_image_dirs(pdf, tmp_path):
    first = TWNLoader(pdf, image_dir=tmp_path / "a", settings=SMALL).load()
    second = TWNLoader(str(pdf), image_dir=tmp_path / "b", settings=SMALL).load()
    assert [d.id for d in first] == [d.id for d in second]
    assert len({d.id for d in first}) == 3


def test_video_frames_have_empty_text_timestamps_and_images(sample_video, tmp_path):
    expected = [item.metadata["timestamp"] for item in iter_file_items(FileRef.describe(sample_video), SMALL)]
    documents = TWNLoader(sample_video, image_dir=tmp_path, settings=SMALL).load()
    assert [d.metadata["timestamp"] for d in documents] == expected and len(expected) >= 2
    assert all(d.page_content == "" and d.metadata["modality"] == "image" for d in documents)
    assert all(Path(d.metadata["image_path"]).is_file() for d in documents)


def test_image_dir_defaults_to_the_cache_directory(pdf, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_image_dir() == tmp_path / "cache" / "twn-rag" / "images"
    [first, *_] = TWNLoader(pdf, settings=SMALL).load()
    assert Path(first.metadata["image_path"]).parent == tmp_path / "cache" / "twn-rag" / "images"


def test_a_missing_file_raises_a_load_error_naming_it(tmp_path):
    with pytest.raises(LoadError, match="nowhere.pdf: no such file"):
        TWNLoader(tmp_path / "nowhere.pdf", image_dir=tmp_path).load()


# -- streaming --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_pdfs(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("long")
    return {pages: write_sample_pdf(folder / f"{pages}-pages.pdf", pages) for pages in (30, 300)}


def test_lazy_load_yields_the_first_page_before_rendering_the_next(long_pdfs, tmp_path):
    image_dir = tmp_path / "images"
    documents = TWNLoader(long_pdfs[300], image_dir=image_dir, settings=SMALL).lazy_load()
    first = next(documents)
    assert first.metadata["page"] == 1
    assert [p.name for p in image_dir.iterdir()] == [Path(first.metadata["image_path"]).name]  # 1 of 300 rendered
    second = next(documents)
    assert second.metadata["page"] == 2 and len(list(image_dir.iterdir())) == 2
    documents.close()


def _live(kind: type) -> int:
    gc.collect()
    return sum(isinstance(obj, kind) for obj in gc.get_objects())


def _streaming_peak(pdf: Path, image_dir: Path, keep: bool) -> tuple[int, int]:
    """Load ``pdf`` lazily; returns (documents seen, peak Python memory in bytes while streaming
    past the first page). With ``keep`` the documents are held, as a loader that accumulated
    them would."""
    kept: list[Document] = []
    gc.collect()
    tracemalloc.start()
    try:
        documents = TWNLoader(pdf, image_dir=image_dir, settings=SMALL).lazy_load()
        kept.append(next(documents))
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        count = 1
        for document in documents:
            count += 1
            if keep:
                kept.append(document)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    return count, peak


def _most_alive(pdf: Path, image_dir: Path, every: int = 100) -> int:
    """The most loader items and PIL images alive at once beyond those alive before, sampled
    every ``every`` pages."""
    before = _live(DocumentItem) + _live(Image.Image)
    most = 0
    for count, _ in enumerate(TWNLoader(pdf, image_dir=image_dir, settings=SMALL).lazy_load(), start=1):
        if count % every == 0:
            most = max(most, _live(DocumentItem) + _live(Image.Image) - before)
    return most


def test_lazy_load_memory_does_not_grow_with_page_count(long_pdfs, tmp_path):
    _streaming_peak(long_pdfs[30], tmp_path / "warm-up", keep=False)  # first-use imports and caches
    pages_30, peak_30 = _streaming_peak(long_pdfs[30], tmp_path / "30", keep=False)
    pages_300, peak_300 = _streaming_peak(long_pdfs[300], tmp_path / "300", keep=False)
    _, peak_held = _streaming_peak(long_pdfs[300], tmp_path / "held", keep=True)
    print(f"streaming peak: {peak_30} B at 30 pages, {peak_300} B at 300; holding 300 documents: {peak_held} B")
    assert (pages_30, pages_300) == (30, 300)
    # Ten times the pages in about the same memory (the collector's timing moves peaks by tens of
    # kB); documents held for 300 pages take several times more, so the measure would see them.
    assert peak_300 < 2 * peak_30
    assert peak_held > 2 * peak_300
    assert _most_alive(long_pdfs[300], tmp_path / "alive") <= 2  # the current page's item and image at most
