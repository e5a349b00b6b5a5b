"""``make demo``: index a sample PDF and a video into an embedded Chroma index with a reasoning
budget, search it, and print the hits and the budget spent. Fully offline: the model is the
tiny TWN built locally. Run as ``python -m twn_rag.demo``; run it twice to see that unchanged
files are not indexed again."""

from __future__ import annotations

import os
from pathlib import Path

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.cli.index_commands import describe_budget, format_hit, print_index_report
from twn_rag.index import TWNIndex
from twn_rag.testing import tiny_checkpoint, write_sample_pdf, write_sample_video

DEMO_CACHE = Path(os.environ.get("TWN_DEMO_CACHE", ".twn-cache"))
DEMO_OUTPUT = Path(os.environ.get("TWN_DEMO_OUTPUT", "demo-output"))
DEMO_QUERIES = ("How do I configure the reasoning budget?", "a red square moving to the right")
# At most half of the documents may think, and all of them together 48 thought tokens.
DEMO_BUDGET = ReasoningBudget(
    mode="adaptive", threshold=0.5, max_think_ratio=0.5, max_thought_tokens=12, token_budget=48
)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checkpoint = tiny_checkpoint(DEMO_CACHE)
    documents = DEMO_OUTPUT / "documents"
    write_sample_pdf(documents / "manual.pdf")
    write_sample_video(documents / "moving-square.mp4", seconds=3.0, fps=8)
    embedder = TWNEmbedder.from_pretrained(checkpoint)
    index_dir = DEMO_OUTPUT / "index"
    index = TWNIndex.open(index_dir, embedder, document_budget=DEMO_BUDGET)
    print(f"model {checkpoint} (dim {embedder.dimension}, {embedder.model.dtype})")
    print(f"indexing {documents} into {index.location}")
    print_index_report(index.add([documents]))
    for query in DEMO_QUERIES:
        print(f"\nsearch {query!r}:")
        for hit in index.search(query, k=3):
            print("  " + format_hit(hit))
    info = index.info()
    print(f"\nindex: {info.items} items ({', '.join(f'{k}: {v}' for k, v in info.modalities.items())})")
    for role in ("document", "query"):
        print(f"{role} budget: {describe_budget(info.budgets[role])}")
    print(f"\ntry: twn-rag search 'invoice total' --index {index_dir}   |   twn-rag info --index {index_dir}")


if __name__ == "__main__":
    main()
