"""Tiny randomly initialised multimodal backbones (Qwen3-VL, Qwen2-VL, Qwen2.5-VL) with their
processors, built from one table of what differs between the architectures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from twn_rag.testing.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, build_tiny_tokenizer

TINY_HIDDEN_SIZE = 64
TINY_IMAGE_MAX_PIXELS = 64 * 64
TINY_PATCH_SIZE = 16
TINY_MERGE_SIZE = 2
TINY_TEMPORAL_PATCH_SIZE = 2
TINY_MIN_PIXELS = 32 * 32


@dataclass(frozen=True)
class TinyArchitecture:
    """What one architecture's tiny backbone needs: its transformers classes (by name, imported
    on use), its vision tower for a text width, and the options only it takes."""

    config_class: str
    model_class: str
    processor_class: str
    video_processor_class: str
    vision_config: Callable[[int], dict]
    # Qwen3-VL interleaves the mRoPE sections and states its head_dim explicitly.
    interleaved_mrope: bool = False
    video_processor_options: dict = field(default_factory=dict)


def _vision_tower(hidden_size: int, **specific) -> dict:
    """The tiny vision tower of Qwen3-VL and Qwen2.5-VL (Qwen2-VL names its widths otherwise),
    projecting into a text stack of ``hidden_size``, with the options only one of them takes."""
    return dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=TINY_PATCH_SIZE,
        out_hidden_size=hidden_size,
        **specific,
    )


TINY_ARCHITECTURES: dict[str, TinyArchitecture] = {
    "qwen3_vl": TinyArchitecture(
        config_class="Qwen3VLConfig",
        model_class="Qwen3VLForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        vision_config=lambda hidden_size: _vision_tower(
            hidden_size,
            spatial_merge_size=TINY_MERGE_SIZE,
            temporal_patch_size=TINY_TEMPORAL_PATCH_SIZE,
            deepstack_visual_indexes=[0],
            num_position_embeddings=64,
        ),
        interleaved_mrope=True,
        video_processor_options={"do_sample_frames": False},
    ),
    "qwen2_vl": TinyArchitecture(
        config_class="Qwen2VLConfig",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        vision_config=lambda hidden_size: dict(
            depth=2, embed_dim=32, hidden_size=hidden_size, num_heads=2, patch_size=TINY_PATCH_SIZE
        ),
    ),
    "qwen2_5_vl": TinyArchitecture(
        config_class="Qwen2_5_VLConfig",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        vision_config=lambda hidden_size: _vision_tower(hidden_size, window_size=64, fullatt_block_indexes=[1]),
    ),
}
SUPPORTED_TINY_ARCHITECTURES = tuple(TINY_ARCHITECTURES)


def _special_ids(tokenizer) -> dict[str, int]:
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _text_config(architecture: TinyArchitecture, vocab_size: int, hidden_size: int, num_layers: int) -> dict:
    head_dim = hidden_size // 4
    # mrope sections split head_dim/2 rotary frequencies over (t, h, w).
    half = head_dim // 2
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": section}
    text = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=None,
        rope_parameters=rope,
    )
    if architecture.interleaved_mrope:
        text.update(head_dim=head_dim, rope_parameters={**rope, "mrope_interleaved": True})
    return text


def _processor(architecture: TinyArchitecture, tokenizer, image_max_pixels: int):
    """The architecture's processor: images downscaled to ``image_max_pixels``, a video frame
    to twice that."""
    import transformers

    image_processor = transformers.Qwen2VLImageProcessor(
        patch_size=TINY_PATCH_SIZE,
        merge_size=TINY_MERGE_SIZE,
        temporal_patch_size=TINY_TEMPORAL_PATCH_SIZE,
        min_pixels=TINY_MIN_PIXELS,
        max_pixels=image_max_pixels,
    )
    image_processor.size = {"shortest_edge": TINY_MIN_PIXELS, "longest_edge": image_max_pixels}
    video_processor = getattr(transformers, architecture.video_processor_class)(
        **architecture.video_processor_options,
        cap_pixels_per_frame=True,
        patch_size=TINY_PATCH_SIZE,
        merge_size=TINY_MERGE_SIZE,
        temporal_patch_size=TINY_TEMPORAL_PATCH_SIZE,
        size={"shortest_edge": TINY_MIN_PIXELS, "longest_edge": image_max_pixels * 2},
    )
    return getattr(transformers, architecture.processor_class)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_backbone(
    output_dir: str | Path,
    arch: str = "qwen3_vl",
    *,
    hidden_size: int = TINY_HIDDEN_SIZE,
    num_layers: int = 2,
    seed: int = 0,
    tokenizer=None,
    image_max_pixels: int = TINY_IMAGE_MAX_PIXELS,
) -> Path:
    """Build and save a randomly initialised tiny backbone with its processor.

    ``arch`` is one of ``qwen3_vl``, ``qwen2_vl``, ``qwen2_5_vl``. The result loads with
    ``AutoModelForImageTextToText`` and ``AutoProcessor`` from ``output_dir``. The processor
    downscales images to ``image_max_pixels`` (a video frame to twice that).
    """
    import transformers

    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"arch must be one of {SUPPORTED_TINY_ARCHITECTURES}, got {arch!r}")
    architecture = TINY_ARCHITECTURES[arch]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_tiny_tokenizer()
    ids = _special_ids(tokenizer)
    vision_token_ids = {name: value for name, value in ids.items() if name not in ("eos_token_id", "pad_token_id")}
    config = getattr(transformers, architecture.config_class)(
        text_config=_text_config(architecture, len(tokenizer), hidden_size, num_layers),
        vision_config=architecture.vision_config(hidden_size),
        **vision_token_ids,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, architecture.model_class)(config)
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.save_pretrained(str(output_dir))
    _processor(architecture, tokenizer, image_max_pixels).save_pretrained(str(output_dir))
    return output_dir
