"""Where a training stage starts: a TWN checkpoint, or a plain backbone for a fresh TWN."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from twn_rag.config import TWNConfig
from twn_rag.embedder import TWNEmbedder
from twn_rag.modeling import EMBEDDING_ADAPTER, TWNModel, load_backbone
from twn_rag.processing import TWNProcessor

logger = logging.getLogger(__name__)


def is_twn_checkpoint(path_or_hub_id: str | Path) -> bool:
    """True when ``path_or_hub_id`` holds the released TWN layout (a local folder is checked on
    disk; a hub id by asking for its ``embedding/adapter_config.json``). Offline, a hub id is a
    backbone when its ``config.json`` is cached; neither cached raises ``FileNotFoundError``."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return (path / EMBEDDING_ADAPTER / "adapter_config.json").is_file()
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo = str(path_or_hub_id)
    try:
        hf_hub_download(repo, f"{EMBEDDING_ADAPTER}/adapter_config.json")
    except LocalEntryNotFoundError as exc:  # no connection (or offline mode) and not cached
        if isinstance(try_to_load_from_cache(repo, "config.json"), str):
            return False
        raise FileNotFoundError(
            f"{repo} is neither a local folder nor in the hub cache, and the hub is unreachable; "
            "download it where there is network and pass the local folder"
        ) from exc
    except EntryNotFoundError:
        return False
    return True


def load_for_training(
    base: str | Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    base_model: str | Path | None = None,
    require_twn: bool = False,
    config: TWNConfig | None = None,
    **create_kwargs,
) -> TWNEmbedder:
    """An embedder to train, on ``device`` with weights in ``dtype``.

    ``base`` is a TWN checkpoint (continued: its adapters, queries, gate and config) or, unless
    ``require_twn``, a plain Qwen-VL backbone on which a fresh TWN is created with
    ``TWNModel.create(**create_kwargs)`` and ``config``. ``base_model`` overrides the backbone a
    checkpoint names (for machines without hub access).
    """
    if is_twn_checkpoint(base):
        logger.info("starting from TWN checkpoint %s", base)
        return TWNEmbedder.from_pretrained(base, base_model=base_model, device=device, dtype=dtype)
    if require_twn:
        raise ValueError(
            f"{base} is not a TWN checkpoint (no {EMBEDDING_ADAPTER}/adapter_config.json); "
            "this stage starts from one: run `twn-rag train sft` first"
        )
    from transformers import AutoProcessor

    logger.info("creating a fresh TWN on backbone %s", base)
    backbone = load_backbone(base, dtype, device)
    model = TWNModel.create(backbone, config or TWNConfig(), **create_kwargs)
    processor = TWNProcessor(AutoProcessor.from_pretrained(str(base)), model.num_queries)
    return TWNEmbedder(model, processor, str(base))
