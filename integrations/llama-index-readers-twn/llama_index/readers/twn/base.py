"""``TWNReader``: PDFs, videos and image files as LlamaIndex documents, one per page or frame.

A thin reader over ``twn_rag.loaders``: each page or sampled frame becomes an
``ImageDocument`` with its text layer (empty for frames), an absolute ``image_path`` to the
rendered page or frame, and the source file as ``ref_doc_id``, so that
``index.delete_ref_doc(source)`` removes every node of that file. Node parsers turn these
documents into ``ImageNode``s that keep the image path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.readers.file.base import is_default_fs
from llama_index.core.schema import Document

from twn_rag.loaders import LoaderSettings
from twn_rag.loaders.convert import to_llama_index_document
from twn_rag.loaders.saved import default_image_dir, iter_saved_items


class TWNReader(BaseReader):
    """Reads one PDF, video or image file per call, lazily (one page or frame in memory at a time).

    ``image_dir`` receives the rendered pages (PNG) and frames (JPEG), named by item id;
    default ``twn_rag.loaders.saved.default_image_dir()``. ``settings`` sets page resolution,
    video frame rate and frame cap. Use it on its own (``load_data(path)``,
    ``lazy_load_data(path)``) or in ``SimpleDirectoryReader(file_extractor={".pdf": reader,
    ".mp4": reader})``, whose ``extra_info`` (``file_path``, dates...) is merged into each
    document's metadata.

    Metadata per document: ``source`` (absolute path, also the ``ref_doc_id``), ``file_name``,
    ``page`` and ``page_count`` or ``timestamp`` (seconds) and ``frame_index``, ``modality``,
    and bookkeeping (``content_hash``, ``source_type``, page size, ``image_path``) that is
    excluded from the LLM and embed text; paths (``source``, ``file_path``) are excluded from
    the embed text only, so a file embeds the same wherever it is stored. Document ids are the
    stable item ids (content hash + source + page or timestamp).
    """

    def __init__(self, image_dir: str | Path | None = None, settings: LoaderSettings | None = None) -> None:
        self.image_dir = Path(image_dir).expanduser().resolve() if image_dir is not None else default_image_dir()
        self.settings = settings or LoaderSettings()

    def lazy_load_data(
        self, file: str | Path, extra_info: dict[str, Any] | None = None, fs: Any = None
    ) -> Iterator[Document]:
        """Yield the documents of ``file`` one page or frame at a time.

        Raises ``twn_rag.loaders.LoadError`` naming the file when it is missing, unsupported or
        damaged, and ``ValueError`` for a non-local ``fs`` (PDFium and PyAV read local paths)."""
        if fs is not None and not is_default_fs(fs):
            raise ValueError(f"TWNReader reads local files only; cannot read {file} from {type(fs).__name__}")
        for item in iter_saved_items(file, self.image_dir, self.settings):
            yield to_llama_index_document(item, extra_info)
