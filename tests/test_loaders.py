import inspect
import re

import numpy as np
import pytest
from PIL import Image
from support.broken_documents import BROKEN_DOCUMENT_REASONS, write_broken_documents

from twn_rag.loaders import (
    DocumentItem,
    FileRef,
    LoadError,
    LoaderSettings,
    discover_files,
    iter_file_items,
    load_items,
    to_langchain_document,
    to_llama_index_node,
    to_llama_index_nodes,
)
from twn_rag.samples import make_sample_image, write_sample_pdf, write_sample_video

SMALL = LoaderSettings(max_image_pixels=64 * 64, video_fps=2.0)


def _items(path, settings=SMALL):
    return list(iter_file_items(FileRef.describe(path), settings))


@pytest.fixture(scope="module")
def pdf(tmp_path_factory):
    return write_sample_pdf(tmp_path_factory.mktemp("pdf") / "manual.pdf", ["first page text", "", "third page"])


def test_pdf_pages_have_text_layer_rendered_image_and_metadata(pdf):
    items = _items(pdf)
    assert [item.text for item in items] == ["first page text", "", "third page"]
    assert [item.modality for item in items] == ["text+image", "image", "text+image"]
    ref = FileRef.describe(pdf)
    for number, item in enumerate(items, start=1):
        assert isinstance(item.image, Image.Image) and item.image.mode == "RGB"
        assert item.image.width * item.image.height <= SMALL.max_image_pixels
        assert item.metadata["page"] == number and item.metadata["page_count"] == 3
        assert item.metadata["source"] == str(pdf.resolve()) and item.metadata["source_type"] == "pdf"
        assert item.metadata["content_hash"] == ref.content_hash
        assert all(isinstance(v, (str, int, float, bool)) for v in item.metadata.values())
    # The rendered page shows the drawn shape: not a blank image.
    assert np.asarray(items[0].image).std() > 5


def test_large_page_render_is_capped_by_max_pixels(tmp_path):
    poster = write_sample_pdf(tmp_path / "poster.pdf", ["a poster"], page_size=(2400.0, 3600.0))
    [item] = _items(poster, LoaderSettings(max_image_pixels=20_000))
    assert item.image.width * item.image.height <= 20_000
    assert item.image.width * item.image.height > 15_000  # capped, not needlessly tiny
    assert abs(item.image.height / item.image.width - 1.5) < 0.05


def test_ids_are_stable_and_follow_content_and_source(pdf, tmp_path):
    first, second = _items(pdf), _items(pdf)
    assert [i.id for i in first] == [i.id for i in second]
    assert len({i.id for i in first}) == 3
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(pdf.read_bytes())
    assert not {i.id for i in _items(copy)} & {i.id for i in first}  # same bytes, another source
    changed = write_sample_pdf(tmp_path / "changed.pdf", ["first page text", "", "third page!"])
    assert FileRef.describe(changed).content_hash != FileRef.describe(pdf).content_hash


def test_video_frames_are_sampled_with_timestamps(sample_video):
    loader = iter_file_items(FileRef.describe(sample_video), SMALL)
    assert inspect.isgenerator(loader)  # decoded as it is consumed
    items = list(loader)
    assert [item.metadata["timestamp"] for item in items] == [0.0, 0.5, 1.0, 1.5]
    assert all(item.modality == "image" and item.metadata["source_type"] == "video" for item in items)
    assert [item.metadata["frame_index"] for item in items] == [0, 1, 2, 3]
    capped = _items(sample_video, LoaderSettings(max_image_pixels=4096, video_fps=2.0, max_video_frames=3))
    assert len(capped) == 3


def test_video_clips_group_frames_into_one_item(sample_video):
    items = _items(sample_video, LoaderSettings(max_image_pixels=4096, video_fps=4.0, clip_frames=3))
    assert [len(item.frames) for item in items] == [3, 3, 2]
    assert all(item.modality == "video" for item in items)
    first = items[0]
    assert first.metadata["timestamp"] == 0.0 and first.metadata["end_timestamp"] == 0.5
    assert first.to_input()["video"] == first.frames and first.to_input()["video_fps"] == 4.0


def test_image_files_point_at_the_original(tmp_path):
    path = tmp_path / "photo.webp"
    make_sample_image((120, 80)).save(path)
    [item] = _items(path)
    assert item.image_path == str(path.resolve())
    assert item.metadata["width"] == 120 and item.metadata["height"] == 80
    assert item.save_image(tmp_path / "elsewhere") == path.resolve()  # never copied


@pytest.fixture
def bad_files(tmp_path, pdf):
    write_broken_documents(tmp_path)
    (tmp_path / "good.pdf").write_bytes(pdf.read_bytes())
    (tmp_path / "readme.xyz").write_text("unknown type")
    (tmp_path / ".hidden.pdf").write_bytes(b"")
    return tmp_path


def test_each_bad_file_is_reported_and_the_others_load(bad_files):
    items, failures = load_items([bad_files], SMALL)
    assert {item.metadata["file_name"] for item in items} == {"good.pdf"}
    reasons = {failure.path.split("/")[-1]: failure.reason for failure in failures}
    assert set(reasons) == set(BROKEN_DOCUMENT_REASONS)
    for name, expected in BROKEN_DOCUMENT_REASONS.items():
        assert re.search(expected, reasons[name]), (name, reasons[name])


def test_loader_errors_name_the_file(bad_files):
    with pytest.raises(LoadError) as caught:
        _items(bad_files / "encrypted.pdf")
    assert caught.value.path.endswith("encrypted.pdf") and "encrypted.pdf" in str(caught.value)


def test_folder_walk_skips_unknown_and_hidden_files(bad_files, tmp_path_factory):
    found = discover_files([bad_files, bad_files / "good.pdf", "/no/such/file.pdf", bad_files / "readme.xyz"])
    names = [path.name for path, _ in found.files]
    assert names == sorted(set(names)) and ".hidden.pdf" not in names
    assert [s.path.split("/")[-1] for s in found.skipped] == ["readme.xyz"]
    assert [f.reason for f in found.failures] == ["no such file or folder"]  # the named .xyz was seen already


def test_load_items_saves_images_for_the_frameworks(pdf, tmp_path):
    items, failures = load_items([pdf], SMALL, image_dir=tmp_path / "images")
    assert not failures
    for item in items:
        assert item.image is None and item.image_path.endswith(".png")
        with Image.open(item.image_path) as saved:
            assert saved.width * saved.height <= SMALL.max_image_pixels


def test_llama_index_nodes_carry_image_paths_not_pixels(pdf, tmp_path):
    from llama_index.core.schema import ImageNode, TextNode

    items, _ = load_items([pdf], SMALL, image_dir=tmp_path)
    node = to_llama_index_node(items[0])
    assert isinstance(node, ImageNode)
    assert node.id_ == items[0].id and node.text == "first page text"
    assert node.image_path == items[0].image_path and node.image is None
    assert node.metadata["page"] == 1 and node.metadata["modality"] == "text+image"
    assert "content_hash" in node.excluded_llm_metadata_keys
    text_node = to_llama_index_node(DocumentItem(id="t1", text="plain text", metadata={"source": "x"}))
    assert type(text_node) is TextNode and text_node.text == "plain text"


def test_llama_index_embed_text_does_not_depend_on_where_the_file_is(pdf, tmp_path):
    from llama_index.core.schema import MetadataMode

    moved = tmp_path / "elsewhere" / "deeper" / pdf.name
    moved.parent.mkdir(parents=True)
    moved.write_bytes(pdf.read_bytes())
    here, _ = load_items([pdf], SMALL, image_dir=tmp_path / "a")
    there, _ = load_items([moved], SMALL, image_dir=tmp_path / "b")
    for a, b in zip(to_llama_index_nodes(here), to_llama_index_nodes(there), strict=True):
        assert a.get_content(metadata_mode=MetadataMode.EMBED) == b.get_content(metadata_mode=MetadataMode.EMBED)
        assert f"file_name: {pdf.name}" in a.get_content(metadata_mode=MetadataMode.EMBED)
        assert str(moved) in b.get_content(metadata_mode=MetadataMode.LLM)  # the LLM can still cite the file


def test_langchain_documents(pdf, tmp_path):
    from langchain_core.documents import Document

    items, _ = load_items([pdf], SMALL, image_dir=tmp_path)
    document = to_langchain_document(items[2])
    assert isinstance(document, Document)
    assert document.id == items[2].id and document.page_content == "third page"
    assert document.metadata["image_path"] == items[2].image_path and document.metadata["page"] == 3


def test_conversion_refuses_unsaved_pixels(pdf):
    item = _items(pdf)[0]
    with pytest.raises(ValueError, match="save_image"):
        to_llama_index_node(item)


def test_write_sample_pdf_is_deterministic(tmp_path):
    a = write_sample_pdf(tmp_path / "a.pdf", 4)
    b = write_sample_pdf(tmp_path / "b.pdf", 4)
    assert a.read_bytes() == b.read_bytes()
    assert [i.metadata["page"] for i in _items(a)] == [1, 2, 3, 4]


def test_write_sample_pdf_without_shapes_renders_only_the_text(tmp_path):
    plain = _items(write_sample_pdf(tmp_path / "plain.pdf", ["same words", "same words"], shapes=False))
    marked = _items(write_sample_pdf(tmp_path / "marked.pdf", ["same words", "same words"]))
    pixels = [np.asarray(item.image, dtype=np.int16) for item in plain]
    assert np.array_equal(pixels[0], pixels[1])  # a page's rendering depends on its text alone
    colourfulness = [int((p.max(axis=2) - p.min(axis=2)).max()) for p in pixels]
    assert max(colourfulness) < 40 and pixels[0].min() < 200  # grey text on white, no coloured shape
    marked_pixels = np.asarray(marked[0].image, dtype=np.int16)
    assert (marked_pixels.max(axis=2) - marked_pixels.min(axis=2)).max() > 100


def test_write_sample_video_roundtrip(tmp_path):
    video = write_sample_video(tmp_path / "v.mp4", seconds=1.0, fps=4)
    assert len(_items(video, LoaderSettings(max_image_pixels=4096, video_fps=4.0))) == 4
