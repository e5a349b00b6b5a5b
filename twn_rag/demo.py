"""``make demo``: index a PDF and a video into an embedded Chroma index with a reasoning
budget, search it, and print the hits, the queries' thoughts and the budget spent.

Fully offline: the model is the bundled miniature TWN (``twn_rag.mini``), trained on a
synthetic world of made-up names with card numbers and colours. The PDF holds the number
cards, the video shows the colour pictures, and the queries ask about names the TWN never saw
in its own training (only its backbone knows their facts), so the answers need a thought.
Run as ``python -m twn_rag.demo``; a second run finds the files already indexed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from twn_rag import ReasoningBudget, TWNEmbedder
from twn_rag.index import SearchHit, TWNIndex
from twn_rag.mini import MiniWorld, mini_model_path, mini_world
from twn_rag.samples import write_sample_pdf, write_video

DEMO_OUTPUT = Path(os.environ.get("TWN_DEMO_OUTPUT", "demo-output"))
VIDEO_FPS = 4  # each colour is on screen for one second; the index samples one frame a second
# Queries think where the gate says so (the model's calibrated threshold), within a token
# budget; documents state their content plainly and never think.
QUERY_TOKEN_BUDGET = 200
DOCUMENT_BUDGET = ReasoningBudget(mode="never")


def write_world_documents(world: MiniWorld, folder: Path) -> None:
    """``cards.pdf`` (one number card per page) and ``colours.mp4`` (one colour a second)."""
    write_sample_pdf(folder / "cards.pdf", [f"This is card number {n}." for n in range(world.num_cards)])
    rng = np.random.default_rng(0)
    frames = [
        (np.array(rgb, dtype=np.int16) + rng.integers(-12, 13, size=(64, 64, 3))).clip(0, 255).astype(np.uint8)
        for rgb in world.colours.values()
        for _ in range(VIDEO_FPS)
    ]
    write_video(folder / "colours.mp4", frames, VIDEO_FPS)


def demo_queries(world: MiniWorld) -> list[tuple[str, str]]:
    """(query, what a right answer is) pairs: two need no thought, three need a fact."""
    first, second, third = world.names("test")[:3]
    card, colour = world.entities[first][0], world.entities[third][1]
    plus = world.entities[second][0] + 3
    return [
        ("number 12", "card 12"),
        ("the grey one", "the grey frame"),
        (f"the card of {first}", f"card {card}"),
        (f"the card of {second} plus 3", f"card {plus}"),
        (f"the colour of {third}", f"the {colour} frame"),
    ]


def describe_hit(hit: SearchHit, world: MiniWorld) -> str:
    """Score, where the hit is, and what it shows (a page's text, a frame's colour)."""
    if hit.timestamp is not None:
        shown = list(world.colours)[int(hit.timestamp)]
        return f"{hit.score:.3f}  {Path(hit.source).name} t={hit.timestamp:.0f}s  (a {shown} frame)"
    return f"{hit.score:.3f}  {Path(hit.source).name} page {hit.page}  {hit.text!r}"


def lookup_summary(index: TWNIndex, world: MiniWorld) -> str:
    """Search "the card of X" for every held-out name; how many find X's card first, and
    how many thought on the way."""
    names = world.names("test")
    right = thought = 0
    for name in names:
        [best] = index.search(f"the card of {name}", k=1)
        thought += index.last_query.thought is not None
        right += best.text == f"This is card number {world.entities[name][0]}."
    return (
        f"'the card of X' for all {len(names)} names TWN training never saw: "
        f"{right} find the right card first; {thought} of the queries thought"
    )


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checkpoint, world = mini_model_path(), mini_world()
    documents = DEMO_OUTPUT / "documents"
    write_world_documents(world, documents)
    # fp32: the model is small, and it was trained and measured in fp32 (bf16 garbles its facts).
    embedder = TWNEmbedder.from_pretrained(checkpoint, dtype="float32")
    query_budget = dataclasses.replace(embedder.default_budget(), token_budget=QUERY_TOKEN_BUDGET)
    index = TWNIndex.open(DEMO_OUTPUT / "index", embedder, query_budget=query_budget, document_budget=DOCUMENT_BUDGET)
    print(f"model: the bundled miniature TWN ({checkpoint}, dim {embedder.dimension}, {embedder.model.dtype})")
    print(f"indexing {documents} into {index.location}")
    report = index.add([documents])
    print("\n".join(report.summary_lines()))
    for line in report.failure_lines():
        print(line, file=sys.stderr)
    for query, expected in demo_queries(world):
        hits = index.search(query, k=3)
        asked = index.last_query
        thought = "no thought" if asked.thought is None else f"thought {asked.thought!r}"
        print(f"\nsearch {query!r} (right answer: {expected}); gate {asked.gate_score:.2f}, {thought}")
        for hit in hits:
            print("  " + describe_hit(hit, world))
    print("\n" + lookup_summary(index, world))
    info = index.info()
    print(f"\nindex: {info.items} items ({', '.join(f'{k}: {v}' for k, v in info.modalities.items())})")
    for role in ("document", "query"):
        print(f"{role} budget: {info.budgets[role].describe()}")
    print(f"\ntry: twn-rag search 'number 7' --index {DEMO_OUTPUT / 'index'}")


if __name__ == "__main__":
    main()
