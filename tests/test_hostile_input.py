"""Hostile input, file by file: bombs refused from the header, extreme aspect ratios padded
into what the processor accepts, only regular files opened, undecodable names stored escaped,
and an item that cannot be embedded isolated from its neighbours."""

import io
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from twn_rag import ReasoningBudget
from twn_rag.index import TWNIndex
from twn_rag.index.report import printable
from twn_rag.inputs import EmbeddingInput
from twn_rag.loaders import FileRef, LoadError, LoaderSettings, discover_files, iter_file_items
from twn_rag.loaders.files import file_sha256
from twn_rag.media import (
    MAX_ASPECT_RATIO,
    MAX_DECODED_PIXELS,
    MediaError,
    decode_image,
    fit_image,
    iter_video_frames,
    load_image,
)
from twn_rag.samples import write_sample_pdf
from twn_rag.testing import hostile_files as hostile

SMALL = LoaderSettings(max_image_pixels=64 * 64, video_fps=2.0)
# The Qwen-VL processors' own limit (``smart_resize``): a larger ratio raises while embedding.
PROCESSOR_MAX_RATIO = 200


def _items(path, settings=SMALL):
    return list(iter_file_items(FileRef.describe(path), settings))


def _returns_within(seconds, function):
    """``function()``'s result, or a failure when it blocks longer than ``seconds``."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"blocked for more than {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _ratio(image):
    return max(image.size) / min(image.size)


# -- bombs -----------------------------------------------------------------------------------
def test_png_bomb_is_refused_from_its_header(tmp_path):
    bomb = hostile.write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000  # 30000 x 30000 pixels in ~100 KB
    with pytest.raises(LoadError) as caught:
        _items(bomb)
    assert caught.value.path == str(bomb) and "refused before decoding" in caught.value.reason
    # Above our own cap but below Pillow's: refused by the declared size, before any pixel data
    # is read (the data here is damaged: decoding would have said so instead).
    side = math.isqrt(MAX_DECODED_PIXELS) + 1
    header_only = tmp_path / "header-only.png"
    header_only.write_bytes(hostile.write_png_bomb(tmp_path / "tmp.png", side).read_bytes()[:200])
    with pytest.raises(MediaError, match=f"declares {side}x{side} pixels.*refused before decoding"):
        load_image(header_only)


def test_jpeg_bomb_is_refused_and_a_large_jpeg_is_decoded_reduced(tmp_path):
    with pytest.raises(LoadError, match="refused before decoding"):
        _items(hostile.write_jpeg_bomb(tmp_path / "bomb.jpg"))
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (4000, 4000), (20, 120, 200)).save(photo, quality=80)
    # Peak memory of decoding it for a 64x64-pixel model, in a fresh process: a full decode
    # needs 48 MB for the RGB bitmap alone; the DCT-scaled decode (1/8 per side) under 1 MB.
    script = (
        "import resource, sys\n"
        "from twn_rag.media import decode_image\n"
        "decode_image(sys.argv[1] + '.warm.png', 4096)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "decoded = decode_image(sys.argv[1], 4096)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(after - before, *decoded.image.size, *decoded.declared_size)\n"
    )
    Image.new("RGB", (8, 8)).save(str(photo) + ".warm.png")
    out = subprocess.run([sys.executable, "-c", script, str(photo)], capture_output=True, text=True, check=True)
    grown_kb, width, height, declared_w, declared_h = map(int, out.stdout.split())
    assert (declared_w, declared_h) == (4000, 4000) and width * height <= 4096
    assert grown_kb < 16 * 1024, f"peak memory grew {grown_kb} KB"


def test_a_bytesio_is_read_whole_whatever_its_position(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (12, 9), "red").save(buffer, format="PNG")
    buffer.seek(0, io.SEEK_END)
    for _ in range(2):
        assert load_image(buffer).size == (12, 9)
    assert buffer.tell() == len(buffer.getvalue())  # the caller's position is left alone


# -- aspect ratios ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(10_000, 20), (20, 10_000), (1_000_000, 1), (5000, 49), (300, 200)])
@pytest.mark.parametrize("max_pixels", [64, 4096, 1280 * 28 * 28])
def test_fit_image_keeps_all_content_within_the_ratio_and_the_pixel_cap(size, max_pixels):
    fitted = fit_image(Image.new("RGB", size, "red"), max_pixels)
    assert fitted.width * fitted.height <= max_pixels and _ratio(fitted) <= MAX_ASPECT_RATIO
    pixels = np.asarray(fitted)
    assert (pixels == (255, 0, 0)).all(axis=-1).any()  # the content is there
    white = (pixels == 255).all(axis=-1).any()
    if max(size) / min(size) <= MAX_ASPECT_RATIO:
        assert not white  # no padding where none is needed
    elif max(size) / min(size) > 2 * MAX_ASPECT_RATIO and max_pixels > MAX_ASPECT_RATIO:
        assert white  # the short side padded with white (a 64-pixel cap fits 64 x 1 unpadded)


def test_extreme_aspect_ratios_are_padded_by_the_loaders(tmp_path):
    [image] = _items(hostile.write_wide_image(tmp_path / "wide.png"))
    [page] = _items(hostile.write_wide_pdf(tmp_path / "wide.pdf"))
    frames = _items(hostile.write_wide_video(tmp_path / "wide.mp4"))
    assert (image.metadata["width"], image.metadata["height"]) == (10_000, 20)  # the file's own size
    assert page.metadata["page_width_pt"] == 10_000 and page.text.startswith("A banner page")
    for item in (image, page, *frames):
        assert _ratio(item.image) <= MAX_ASPECT_RATIO and item.image.width * item.image.height <= 64 * 64
    frame = frames[1].image  # grey 60, letterboxed with black
    assert frame.getpixel((0, 0)) == (0, 0, 0) and frame.getpixel((frame.width // 2, frame.height // 2)) != (0, 0, 0)
    # Every route into the embedder pads too: a path, and video frames decoded from a file.
    assert _ratio(load_image(tmp_path / "wide.png")) <= MAX_ASPECT_RATIO
    assert all(_ratio(f.image) <= MAX_ASPECT_RATIO for f in iter_video_frames(tmp_path / "wide.mp4", 2.0, 4))


def test_padded_items_embed(tmp_path, embedder):
    items = [
        *_items(hostile.write_wide_image(tmp_path / "wide.png")),
        *_items(hostile.write_wide_pdf(tmp_path / "wide.pdf")),
        *_items(hostile.write_wide_video(tmp_path / "wide.mp4")),
    ]
    results = embedder.encode([item.to_input() for item in items], role="document")
    assert len(results) == len(items) and all(np.isfinite(r.vector).all() for r in results)
    # What the padding prevents: the processor itself refuses the unpadded image.
    with pytest.raises(ValueError, match=f"aspect ratio must be smaller than {PROCESSOR_MAX_RATIO}"):
        embedder.processor.embedding_batch([EmbeddingInput(images=[Image.new("RGB", (10_000, 20))])], ["x"], [None])
    assert decode_image(Image.new("RGB", (10_000, 20))).image.size == (10_000, 100)


# -- files that are not regular files ----------------------------------------------------------
def test_discovery_lists_links_loops_fifos_and_devices_with_reasons_and_opens_none(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    good = write_sample_pdf(folder / "good.pdf", ["fine"])
    hostile.make_symlink_loop(folder, "loop.pdf")
    hostile.make_fifo(folder / "pipe.pdf")
    hostile.link_to_device(folder / "zero.mp4")
    os.symlink("missing.pdf", folder / "dangling.pdf")
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")  # a folder loop, not followed
    found = _returns_within(30, lambda: discover_files([folder]))
    assert found.files == [(good, "pdf")] and not found.failures
    reasons = {os.path.relpath(s.path, folder): s.reason for s in found.skipped}
    assert reasons == {
        "dangling.pdf": "broken symbolic link (its target does not exist)",
        "loop.pdf": "symbolic link loop: the link cannot be resolved",
        "loop.pdf.other": "symbolic link loop: the link cannot be resolved",
        "pipe.pdf": "a FIFO (named pipe), not a regular file: only regular files are read",
        "sub/up": "symbolic link to a folder (not followed)",
        "zero.mp4": "a character device, not a regular file: only regular files are read",
    }
    named = _returns_within(30, lambda: discover_files([folder / "pipe.pdf", folder / "loop.pdf"]))
    fifo, loop = named.failures  # named on the command line: failures, not skips
    assert fifo.reason.startswith("a FIFO") and loop.reason.startswith("symbolic link loop")


def test_describe_never_opens_a_fifo_or_a_device(tmp_path):
    fifo = hostile.make_fifo(tmp_path / "pipe.pdf")
    zero = hostile.link_to_device(tmp_path / "zero.mp4")
    for path, reason in ((fifo, "a FIFO"), (zero, "a character device")):
        with pytest.raises(LoadError, match=reason):
            _returns_within(30, lambda path=path: FileRef.describe(path))
        # Even asked directly (a regular file swapped for a FIFO after the check), hashing refuses.
        with pytest.raises(OSError, match=reason):
            _returns_within(30, lambda path=path: file_sha256(path))


# -- names -------------------------------------------------------------------------------------
def test_an_undecodable_name_is_stored_escaped_and_ids_stay_apart(tmp_path):
    raw = hostile.undecodable_name(tmp_path)
    write_sample_pdf(raw, ["bytes that are not UTF-8"])
    ref = FileRef.describe(raw)
    assert ref.source == str(tmp_path.resolve() / "caf\\xe9-\\xff.pdf") and ref.source.encode("utf-8")
    [item] = _items(raw)
    assert item.metadata["source"] == ref.source and item.metadata["file_name"] == "caf\\xe9-\\xff.pdf"
    # A file literally named with the escape text is stored under the same source string,
    # but its items are its own (the id digests the path's bytes).
    twin = tmp_path / "caf\\xe9-\\xff.pdf"
    twin.write_bytes(raw.read_bytes())
    twin_ref = FileRef.describe(twin)
    assert twin_ref.source == ref.source and twin_ref.item_id("p00001") != ref.item_id("p00001")
    assert ref.owns(ref.item_id("p00001")) and not twin_ref.owns(ref.item_id("p00001"))


def test_printable_escapes_what_breaks_a_line():
    assert printable("plain/näme.pdf") == "plain/näme.pdf"
    assert printable("a\nb\tc\x1b[31md\u2028e") == "a\\nb\\tc\\x1b[31md\\u2028e"
    assert printable(os.fsdecode(b"caf\xe9.pdf")) == "caf\\xe9.pdf"


# -- embedding failures ------------------------------------------------------------------------
POISON = "poisoned page"


@pytest.fixture
def poisoned_embedder(embedder, monkeypatch):
    """The tiny embedder, failing every batch that holds a page whose text contains POISON
    (raising, or returning a NaN vector for it when ``mode["nan"]``), and counting calls."""
    real_encode = embedder.encode
    calls = []
    mode = {"nan": False}

    def encode(inputs, *args, **kwargs):
        calls.append(len(inputs))
        poisoned = [i for i, data in enumerate(inputs) if POISON in data.get("text", "")]
        if poisoned and not mode["nan"]:
            raise ValueError("absolute aspect ratio must be smaller than 200, got 765.5")
        results = real_encode(inputs, *args, **kwargs)
        for i in poisoned:
            results[i].vector = np.full_like(results[i].vector, np.nan)
        return results

    monkeypatch.setattr(embedder, "encode", encode)
    return embedder, calls, mode


@pytest.mark.parametrize("nan", [False, True], ids=["raises", "nan-vector"])
def test_an_item_that_cannot_be_embedded_fails_alone(tmp_path, poisoned_embedder, nan):
    embedder, calls, mode = poisoned_embedder
    mode["nan"] = nan
    pages = ["page one", "page two", POISON, "page four", "page five", "page six"]
    pdf = write_sample_pdf(tmp_path / "docs" / "report.pdf", pages)
    write_sample_pdf(tmp_path / "docs" / "other.pdf", ["another file"])
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=ReasoningBudget(mode="never"))
    report = index.add([tmp_path / "docs"], batch_size=4, chunk_size=4)

    [failure] = report.failures
    expected = "non-finite vector" if nan else "ValueError: absolute aspect ratio must be smaller than 200"
    assert failure.path == str(pdf) and failure.reason.startswith("page 3 could not be embedded: ")
    assert expected in failure.reason and failure.reason.endswith("the other items are stored, the next run retries")
    # Batches: other.pdf [1]; report.pdf [4] fails -> [2] ok + [2] fails -> [1] fails + [1] ok; then [2].
    assert calls == [1, 4, 2, 2, 1, 1, 2]
    records = index._collection.get(include=["metadatas"])
    pages_stored = sorted(m["page"] for m in records["metadatas"] if m["file_name"] == "report.pdf")
    assert pages_stored == [1, 2, 4, 5, 6] and report.items_added == 6
    assert not any(m["last_in_file"] for m in records["metadatas"] if m["file_name"] == "report.pdf")
    assert index.budget("document").ledger.items_seen == 6  # failed attempts are not counted
    # No orphan: every image under images/ belongs to a stored record.
    recorded = {os.path.basename(m["image_path"]) for m in records["metadatas"]}
    assert {p.name for p in index.images_dir.iterdir()} == recorded

    calls.clear()
    again = index.add([tmp_path / "docs"], batch_size=4)
    assert calls == [1] and [f.path for f in again.failures] == [str(pdf)]  # only page 3 retried
    assert again.files_unchanged == 1 and again.items_added == 0
