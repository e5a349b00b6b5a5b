"""``TWNLoader``: a PDF, video or image file as LangChain documents, one per page or frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from twn_rag.loaders import LoaderSettings, to_langchain_document
from twn_rag.loaders.saved import default_image_dir, iter_saved_items


class TWNLoader(BaseLoader):
    """Loads ``file_path`` (PDF, video or image) through ``twn_rag.loaders``.

    ``lazy_load`` streams: each page or sampled frame is rendered, written under ``image_dir``
    (default ``twn_rag.loaders.saved.default_image_dir()``) and yielded before the next one is
    read, so memory does not grow with the file. Each ``Document`` has the page's text layer
    (empty for a frame) as ``page_content``, the stable item id (content hash + source + page or
    timestamp) as ``id``, and metadata ``source`` (absolute path), ``file_name``, ``page`` and
    ``page_count`` or ``timestamp`` and ``frame_index``, ``modality``, ``content_hash`` and
    ``image_path`` (absolute). ``TWNChroma`` embeds such a document from its text and image.
    ``settings`` sets page resolution, video frame rate and frame cap. A file that is missing,
    unsupported or damaged raises ``twn_rag.loaders.LoadError`` naming it.
    """

    def __init__(
        self,
        file_path: str | Path,
        image_dir: str | Path | None = None,
        settings: LoaderSettings | None = None,
    ) -> None:
        self.file_path = file_path
        self.image_dir = Path(image_dir).expanduser().resolve() if image_dir is not None else default_image_dir()
        self.settings = settings or LoaderSettings()

    def lazy_load(self) -> Iterator[Document]:
        """Yield the file's documents one page or frame at a time."""
        for item in iter_saved_items(self.file_path, self.image_dir, self.settings):
            yield to_langchain_document(item)
