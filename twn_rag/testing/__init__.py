"""Tiny, fully offline TWN models for tests, examples and benchmarks.

Everything here is built locally in seconds with no network: a byte-level BPE tokenizer
trained on a small corpus (``tokenizer``), a randomly initialised tiny multimodal backbone
(Qwen3-VL by default, Qwen2-VL and Qwen2.5-VL too) with its processor (``backbone``), and a TWN
checkpoint directory in the released layout (``checkpoint``).

For test suites: ``twn_rag.testing.pytest_plugin`` holds the fixtures they share and
``twn_rag.testing.integrations`` what the framework integrations' tests share (neither is
imported here: the plugin needs pytest). Sample media are in ``twn_rag.samples``.
"""

from twn_rag.testing.backbone import (
    SUPPORTED_TINY_ARCHITECTURES,
    TINY_HIDDEN_SIZE,
    TINY_IMAGE_MAX_PIXELS,
    build_tiny_backbone,
)
from twn_rag.testing.checkpoint import TINY_NUM_QUERIES, TINY_TWN_CONFIG, build_tiny_twn_checkpoint, tiny_checkpoint
from twn_rag.testing.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, TINY_VOCAB_SIZE, build_tiny_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "SUPPORTED_TINY_ARCHITECTURES",
    "TINY_HIDDEN_SIZE",
    "TINY_IMAGE_MAX_PIXELS",
    "TINY_NUM_QUERIES",
    "TINY_TWN_CONFIG",
    "TINY_VOCAB_SIZE",
    "build_tiny_backbone",
    "build_tiny_tokenizer",
    "build_tiny_twn_checkpoint",
    "tiny_checkpoint",
]
