"""Damaged files of every kind the loaders must refuse, for the loader and CLI tests."""

from __future__ import annotations

from pathlib import Path

from twn_rag.samples import write_sample_pdf, write_sample_video

# File name -> a regular expression the loader's reason for refusing it matches.
BROKEN_DOCUMENT_REASONS = {
    "truncated.pdf": "damaged or not a PDF",
    "empty.pdf": "empty file",
    "corrupt.pdf": "damaged or not a PDF",
    "encrypted.pdf": "encrypted",
    "text-file.mp4": "cannot decode video",
    "truncated.mp4": "cannot decode video|no video stream|no decodable frame",
    "cut-tail.mkv": "truncated or damaged video",
    "broken.png": "cannot read image",
}


def write_broken_documents(directory: str | Path) -> dict[str, Path]:
    """Write one damaged file of each kind the loaders must refuse (the keys of
    ``BROKEN_DOCUMENT_REASONS``): a truncated, an empty, a corrupt and an encrypted PDF, a
    text file named ``.mp4``, an MP4 cut before its index, an MKV cut in the middle (its first
    frames still decode) and an undecodable PNG. Returns name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pdf = write_sample_pdf(directory / "truncated.pdf", 3).read_bytes()
    (directory / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    (directory / "empty.pdf").write_bytes(b"")
    (directory / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    write_sample_pdf(directory / "encrypted.pdf", ["secret"], password="secret")
    (directory / "text-file.mp4").write_text("this is a text file with a video extension\n")
    video = write_sample_video(directory / "truncated.mp4", seconds=1.0, fps=8).read_bytes()
    (directory / "truncated.mp4").write_bytes(video[: len(video) // 3])
    mkv = write_sample_video(directory / "cut-tail.mkv", seconds=4.0, fps=8).read_bytes()
    (directory / "cut-tail.mkv").write_bytes(mkv[: len(mkv) * 3 // 5])
    (directory / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not image data" * 8)
    return {name: directory / name for name in BROKEN_DOCUMENT_REASONS}
