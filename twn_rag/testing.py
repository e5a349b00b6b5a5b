"""Tiny, fully offline TWN models for tests, examples and the demo.

Everything here is built locally in seconds with no network: a byte-level BPE tokenizer
trained on a small corpus, a randomly initialised tiny multimodal backbone (Qwen3-VL by
default, Qwen2-VL and Qwen2.5-VL too), its processor, and a TWN checkpoint directory in
the released layout (``reasoning/``, ``embedding/``, ``gate_mlp.pt``, ``queries.pt``,
``twn_config.json``).
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TINY_VOCAB_SIZE = 600
TINY_HIDDEN_SIZE = 64
TINY_NUM_QUERIES = 4
TINY_IMAGE_MAX_PIXELS = 64 * 64
SUPPORTED_TINY_ARCHITECTURES = ("qwen3_vl", "qwen2_vl", "qwen2_5_vl")

# A Qwen-style chat template: content may be a string or a list of typed parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Represent the user's input for retrieval.",
    "Represent the document for retrieval.",
    "Think briefly about what the input is about before it is embedded.",
    "The invoice total is the sum of the line items plus tax.",
    "A red square and a blue circle on a white page.",
    "The video shows a ball moving from the left to the right.",
    "Page one describes the installation, page two the configuration.",
    "What is the capital of France? Paris is the capital of France.",
    "Seven plus five equals twelve; twelve minus three equals nine.",
    "user assistant system image video frame page document query answer",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 seconds minutes hours",
]


def build_tiny_tokenizer(
    output_dir: str | Path | None = None, corpus: list[str] | None = None, vocab_size: int = TINY_VOCAB_SIZE
):
    """Train a tiny byte-level BPE tokenizer with the Qwen special tokens and chat template
    (on ``corpus`` when given, else on a small built-in one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((corpus or _CORPUS) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    if output_dir is not None:
        fast.save_pretrained(str(output_dir))
    return fast


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


def _text_config(arch: str, vocab_size: int, hidden_size: int, num_layers: int) -> dict:
    text = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=None,
    )
    head_dim = hidden_size // 4
    # mrope sections split head_dim/2 rotary frequencies over (t, h, w).
    half = head_dim // 2
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    if arch == "qwen3_vl":
        text.update(
            head_dim=head_dim,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1e4,
                "mrope_section": section,
                "mrope_interleaved": True,
            },
        )
    else:
        text.update(
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": section},
        )
    return text


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
    from transformers import Qwen2VLImageProcessor

    if arch not in SUPPORTED_TINY_ARCHITECTURES:
        raise ValueError(f"arch must be one of {SUPPORTED_TINY_ARCHITECTURES}, got {arch!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_tiny_tokenizer()
    ids = _special_ids(tokenizer)
    text = _text_config(arch, len(tokenizer), hidden_size, num_layers)
    image_kwargs = dict(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=32 * 32,
        max_pixels=image_max_pixels,
    )
    torch.manual_seed(seed)
    if arch == "qwen3_vl":
        from transformers import (
            Qwen3VLConfig,
            Qwen3VLForConditionalGeneration,
            Qwen3VLProcessor,
            Qwen3VLVideoProcessor,
        )

        config = Qwen3VLConfig(
            text_config=text,
            vision_config=dict(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                patch_size=16,
                spatial_merge_size=2,
                temporal_patch_size=2,
                out_hidden_size=hidden_size,
                deepstack_visual_indexes=[0],
                num_position_embeddings=64,
            ),
            **{k: v for k, v in ids.items() if k.endswith("token_id") and "pad" not in k and "eos" not in k},
        )
        model = Qwen3VLForConditionalGeneration(config)
        image_processor = Qwen2VLImageProcessor(**image_kwargs)
        image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": image_max_pixels}
        video_processor = Qwen3VLVideoProcessor(
            do_sample_frames=False,
            cap_pixels_per_frame=True,
            patch_size=16,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 32 * 32, "longest_edge": image_max_pixels * 2},
        )
        processor = Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=CHAT_TEMPLATE,
        )
    else:
        from transformers import Qwen2VLVideoProcessor

        token_ids = {k: v for k, v in ids.items() if k.endswith("token_id") and "pad" not in k}
        token_ids.pop("eos_token_id")
        if arch == "qwen2_vl":
            from transformers import Qwen2VLConfig as config_class
            from transformers import Qwen2VLForConditionalGeneration as model_class
            from transformers import Qwen2VLProcessor as processor_class

            vision = dict(depth=2, embed_dim=32, hidden_size=hidden_size, num_heads=2, patch_size=16)
        else:
            from transformers import Qwen2_5_VLConfig as config_class
            from transformers import Qwen2_5_VLForConditionalGeneration as model_class
            from transformers import Qwen2_5_VLProcessor as processor_class

            vision = dict(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                patch_size=16,
                out_hidden_size=hidden_size,
                window_size=64,
                fullatt_block_indexes=[1],
            )
        config = config_class(text_config=text, vision_config=vision, **token_ids)
        model = model_class(config)
        image_processor = Qwen2VLImageProcessor(**image_kwargs)
        image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": image_max_pixels}
        video_processor = Qwen2VLVideoProcessor(
            cap_pixels_per_frame=True,
            patch_size=16,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 32 * 32, "longest_edge": image_max_pixels * 2},
        )
        processor = processor_class(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=CHAT_TEMPLATE,
        )
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.save_pretrained(str(output_dir))
    processor.save_pretrained(str(output_dir))
    return output_dir


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


def make_sample_image(size: tuple[int, int] = (96, 64), seed: int = 0):
    """A deterministic RGB test image: coloured shapes on white."""
    from PIL import Image, ImageDraw

    rng = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = (int(torch.randint(0, s // 2, (1,), generator=rng)) for s in size)
        x1, y1 = x0 + size[0] // 3, y0 + size[1] // 3
        colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=rng))
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    return image


def write_video(path: str | Path, frames, fps: int) -> Path:
    """Encode RGB ``frames`` (an iterable of ``[height, width, 3]`` uint8 arrays, all one size)
    as an MPEG-4 video at ``fps``; returns ``path``."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.pix_fmt = "yuv420p"
        for i, pixels in enumerate(frames):
            if i == 0:
                stream.height, stream.width = pixels.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_sample_video(path: str | Path, seconds: float = 2.0, fps: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    """Encode a short MPEG-4 video of a square moving left to right; returns ``path``."""
    import numpy as np

    width, height = size
    total = int(seconds * fps)

    def frames():
        for i in range(total):
            pixels = np.full((height, width, 3), 255, dtype=np.uint8)
            x = int((width - 16) * i / max(total - 1, 1))
            pixels[height // 2 - 8 : height // 2 + 8, x : x + 16] = (200, 30, 30)
            yield pixels

    return write_video(path, frames(), fps)


SAMPLE_PAGE_TEXTS = (
    "Installation: unpack the archive and run the installer. The invoice total is 42 euros.",
    "Configuration: set the index directory and the reasoning budget before the first run.",
    "A red square and a blue circle on a white page; the video shows a ball moving right.",
)
_SAMPLE_COLOURS = ((200, 30, 30), (30, 60, 200), (30, 160, 60), (220, 160, 20))


def write_sample_pdf(
    path: str | Path,
    pages: int | list[str] | tuple[str, ...] = SAMPLE_PAGE_TEXTS,
    *,
    page_size: tuple[float, float] = (300.0, 200.0),
    password: str | None = None,
) -> Path:
    """Write a real PDF with a text layer and a coloured shape on every page; returns ``path``.

    ``pages`` is a list of page texts, or a page count (texts cycle through
    ``SAMPLE_PAGE_TEXTS`` with the page number). ``page_size`` is in points. With ``password``
    the file is encrypted (readers need that password). The bytes are deterministic.
    """
    import datetime

    from fpdf import FPDF

    texts = (
        [f"Page {i + 1}. {SAMPLE_PAGE_TEXTS[i % len(SAMPLE_PAGE_TEXTS)]}" for i in range(pages)]
        if isinstance(pages, int)
        else list(pages)
    )
    width, height = page_size
    pdf = FPDF(unit="pt", format=(width, height))
    pdf.set_creation_date(datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
    pdf.set_auto_page_break(False)
    pdf.set_margins(12, 12, 12)
    for number, text in enumerate(texts):
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(width - 24, 13, text)
        pdf.set_fill_color(*_SAMPLE_COLOURS[number % len(_SAMPLE_COLOURS)])
        side = min(width, height) / 4
        pdf.rect(width - side - 12, height - side - 12, side, side, style="F")
    if password is not None:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


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
