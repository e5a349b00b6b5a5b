"""``make demo``: embed a few sample inputs offline with the tiny TWN and show what the gate
and the budget decided. Run as ``python -m twn_rag.demo``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.testing import make_sample_image, tiny_checkpoint, write_sample_video

DEMO_CACHE = Path(os.environ.get("TWN_DEMO_CACHE", ".twn-cache"))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checkpoint = tiny_checkpoint(DEMO_CACHE)
    embedder = TWNEmbedder.from_pretrained(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_sample_video(Path(tmp) / "moving-square.mp4")
        inputs = {
            "text": "What is seven plus five?",
            "image": make_sample_image(),
            "video frames": {"text": "What moves in this clip?", "video": str(video)},
            "text + image": {"text": "the invoice total", "image": make_sample_image(seed=3)},
        }
        budget = ReasoningBudget(mode="adaptive", threshold=0.5, max_thought_tokens=12)
        results = embedder.encode(list(inputs.values()), role="query", budget=budget)
    print(f"model {checkpoint} (dim {embedder.dimension}, {embedder.model.dtype})")
    for name, result in zip(inputs, results):
        thought = "-" if result.thought is None else repr(result.thought)
        head = ", ".join(f"{v:+.3f}" for v in result.vector[:4])
        print(f"{name:>13}: gate {result.gate_score:.2f}  thought {thought}  vector [{head}, ...]")
    ledger = budget.ledger
    print(f"budget: {ledger.items_thought}/{ledger.items_seen} inputs thought, {ledger.thought_tokens} thought tokens")


if __name__ == "__main__":
    main()
