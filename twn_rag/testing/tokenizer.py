"""The tiny tokenizer: a byte-level BPE trained in a second on a small corpus, with the Qwen
special tokens and a Qwen-style chat template."""

from __future__ import annotations

from pathlib import Path

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
