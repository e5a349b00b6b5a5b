"""What the LlamaIndex and LangChain integrations share: attaching to a loaded embedder and
turning framework image inputs into ``encode`` inputs. (The scalar metadata that records a
result's thought is ``twn_rag.result_metadata``, shared with ``TWNIndex``.)

The integrations themselves (``llama_index.embeddings.twn``, ``langchain_twn``) are thin
classes over these functions and ``TWNEmbedder.encode``; no model logic lives in them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from twn_rag.device import resolve_device, resolve_dtype
from twn_rag.embedder import EmbeddingResult, TWNEmbedder


def as_float_lists(results: Sequence[EmbeddingResult]) -> list[list[float]]:
    """The vectors of ``results`` as lists of Python floats (what both frameworks expect)."""
    return [result.vector.tolist() for result in results]


def image_input(source: Any) -> dict[str, Any]:
    """An ``encode`` input for one image given as a path, bytes, a ``BytesIO`` or a PIL image.

    A ``BytesIO`` is read whole whatever its position, so the same buffer can be embedded twice.
    """
    if isinstance(source, io.BytesIO):
        return {"image": source.getvalue()}
    return {"image": source}


def text_and_image_input(text: str, image: Any | None) -> Any:
    """The ``encode`` input for a document's ``text`` with an optional ``image`` (see
    ``image_input``): the text alone when there is no image (``encode`` refuses an empty one,
    naming it), else the image with the text beside it, so both are embedded as one input."""
    if image is None:
        return text
    item = image_input(image)
    if text.strip():
        item["text"] = text
    return item


def shared_embedder_settings(
    embedder: TWNEmbedder, model_name: str | None, device: str | None, dtype: str | None
) -> dict[str, str]:
    """``model_name``, ``device`` and ``dtype`` describing an already-loaded ``embedder``, so
    that a serialised integration reloads the same model. A value left unset (``None`` or
    ``"auto"``) is taken from the embedder; a value that contradicts it raises ``ValueError``."""
    if not isinstance(embedder, TWNEmbedder):
        raise TypeError(f"embedder must be a TWNEmbedder, got {type(embedder).__name__}")
    if model_name is not None and model_name != embedder.model_id:
        raise ValueError(f"model_name {model_name!r} does not match the given embedder's model {embedder.model_id!r}")
    actual_device, actual_dtype = embedder.model.device, embedder.model.dtype
    if device not in (None, "auto") and resolve_device(device).type != actual_device.type:
        raise ValueError(f"device {device!r} does not match the given embedder's device {actual_device}")
    if dtype not in (None, "auto") and resolve_dtype(dtype, actual_device) != actual_dtype:
        raise ValueError(f"dtype {dtype!r} does not match the given embedder's dtype {actual_dtype}")
    return {
        "model_name": embedder.model_id,
        "device": str(actual_device) if device in (None, "auto") else device,
        "dtype": str(actual_dtype).removeprefix("torch.") if dtype in (None, "auto") else dtype,
    }
