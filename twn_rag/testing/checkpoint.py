"""Tiny TWN checkpoints in the released layout (``reasoning/``, ``embedding/``, ``gate_mlp.pt``,
``queries.pt``, ``twn_config.json``) on a tiny backbone, built once and reused."""

from __future__ import annotations

from pathlib import Path

import torch

from twn_rag.testing.backbone import TINY_IMAGE_MAX_PIXELS, build_tiny_backbone
from twn_rag.testing.tokenizer import _CORPUS

TINY_NUM_QUERIES = 4

TINY_TWN_CONFIG = dict(
    max_thought_tokens=12,
    max_image_pixels=TINY_IMAGE_MAX_PIXELS,
    video_fps=2.0,
    max_video_frames=4,
)


def build_tiny_twn_checkpoint(
    output_dir: str | Path,
    arch: str = "qwen3_vl",
    *,
    backbone_dir: str | Path | None = None,
    num_queries: int = TINY_NUM_QUERIES,
    gate_hidden: int = 16,
    seed: int = 0,
    **config_overrides,
) -> Path:
    """Build a TWN checkpoint in the released layout on a tiny backbone.

    The backbone is built into ``output_dir/backbone`` unless ``backbone_dir`` names an
    existing one; the adapters are random (not identity) so that the two adapters and the
    thought visibly change the vectors. ``adapter_config.json`` names the backbone's path.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from twn_rag.config import TWNConfig
    from twn_rag.modeling import TWNModel

    # Absolute: adapter_config.json records the backbone path, which must resolve from any cwd.
    output_dir = Path(output_dir).resolve()
    if backbone_dir is None:
        backbone_dir = build_tiny_backbone(output_dir / "backbone", arch, seed=seed)
    backbone_dir = Path(backbone_dir).resolve()
    backbone = AutoModelForImageTextToText.from_pretrained(str(backbone_dir), dtype=torch.float32)
    config = TWNConfig(**{**TINY_TWN_CONFIG, **config_overrides})
    model = TWNModel.create(
        backbone,
        config,
        num_queries=num_queries,
        lora_rank=4,
        lora_alpha=8,
        gate_hidden=gate_hidden,
        init_lora_weights=False,
        seed=seed,
    )
    _centre_gate(model, AutoProcessor.from_pretrained(str(backbone_dir)))
    return model.save(output_dir)


def _centre_gate(model, hf_processor) -> None:
    """Shift and scale the random gate's last layer so that, on a sample of texts, its scores
    spread on both sides of 0.5 (a random gate otherwise says the same thing for everything)."""
    from twn_rag.embedder import TWNEmbedder
    from twn_rag.inputs import EmbeddingInput
    from twn_rag.processing import TWNProcessor

    embedder = TWNEmbedder(model, TWNProcessor(hf_processor, model.num_queries), model_id="tiny")
    with torch.no_grad():
        _, pooled = embedder.embed_items([EmbeddingInput(text=line) for line in _CORPUS], "query")
        logits = torch.logit(model.gate_scores(pooled).double().clamp(1e-12, 1 - 1e-12))
        last = model.gate.layers[-1]
        scale = 2.0 / max(float(logits.std()), 1e-6)
        last.weight.mul_(scale)
        last.bias.mul_(scale)
        last.bias.sub_(float(logits.median()) * scale)


def tiny_checkpoint(cache_dir: str | Path, arch: str = "qwen3_vl") -> Path:
    """A tiny TWN checkpoint under ``cache_dir``, built on first use and reused after."""
    target = Path(cache_dir) / f"tiny-twn-{arch}"
    if not (target / "gate_mlp.pt").is_file():
        build_tiny_twn_checkpoint(target, arch)
    return target
