"""``make demo``: index two PDFs and a video into an embedded Chroma index with a reasoning
budget, search it, and print which documents thought and what it changed, the hits, the
queries' thoughts and the budget spent.

Fully offline: the model is the bundled miniature TWN (``twn_rag.mini``), trained on a
synthetic world of made-up names with card numbers and friends, and of tickets for seats in halls. ``cards.pdf``
holds the number cards, ``colours.mp4`` shows the colour pictures, ``tickets.pdf`` the tickets
the TWN never saw in its own training (only its backbone knows their seats and halls). A
ticket page shows only its number, so "the ticket for hall 301" finds it only if the page
thought ("Fact: ticket 83 is for seat 171. Fact: seat 171 is in hall 301."): the index's
document budget is spent there.
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
from twn_rag.loaders import LoaderSettings
from twn_rag.mini import MiniWorld, card_page_text, mini_model_path, mini_world, ticket_page_text, write_world_pdf
from twn_rag.result_metadata import THOUGHT_USED_KEY
from twn_rag.samples import write_video

DEMO_OUTPUT = Path(os.environ.get("TWN_DEMO_OUTPUT", "demo-output"))
VIDEO_FPS = 4  # each colour is on screen for one second; the index samples one frame a second
# Queries think where the gate says so (the model's calibrated threshold), within a token
# budget; documents too, on at most a quarter of the index.
QUERY_TOKEN_BUDGET = 400
DOCUMENT_THINK_RATIO = 0.25


def write_world_documents(world: MiniWorld, folder: Path) -> None:
    """``cards.pdf`` (one number card per page), ``tickets.pdf`` (the held-out tickets, one per
    page, in ticket order) and ``colours.mp4`` (one colour a second)."""
    write_world_pdf(folder / "cards.pdf", [card_page_text(n) for n in range(world.num_cards)])
    write_world_pdf(folder / "tickets.pdf", [ticket_page_text(n) for n in world.ticket_numbers("test")])
    rng = np.random.default_rng(0)
    frames = [
        (np.array(rgb, dtype=np.int16) + rng.integers(-12, 13, size=(64, 64, 3))).clip(0, 255).astype(np.uint8)
        for rgb in world.colours.values()
        for _ in range(VIDEO_FPS)
    ]
    write_video(folder / "colours.mp4", frames, VIDEO_FPS)


def demo_queries(world: MiniWorld) -> list[tuple[str, str]]:
    """(query, what a right answer is) pairs: two need no thought, one needs a fact on the
    query side, one on the document side (where a query thought would go astray)."""
    name, ticket = world.names("test")[0], world.ticket_numbers("test")[0]
    return [
        ("number 12", "card 12"),
        ("the grey one", "the grey frame"),
        (f"the card of the friend of {name}", f"card {world.friend_card(name)}"),
        (f"the ticket for hall {world.tickets[ticket][1]}", f"ticket {ticket}"),
    ]


def describe_item(hit: SearchHit, world: MiniWorld) -> str:
    """Where an item is and what it shows (a page's text, a frame's colour)."""
    if hit.timestamp is not None:
        shown = list(world.colours)[int(hit.timestamp)]
        return f"{Path(hit.source).name} t={hit.timestamp:.0f}s  (a {shown} frame)"
    return f"{Path(hit.source).name} page {hit.page}  {hit.text!r}"


def describe_hit(hit: SearchHit, world: MiniWorld) -> str:
    """Score, where the hit is, what it shows, and its thought if it thought."""
    thought = f"  thought {hit.thought!r}" if hit.thought else ""
    return f"{hit.score:.3f}  {describe_item(hit, world)}{thought}"


def document_thoughts(index: TWNIndex, world: MiniWorld, thought: list[SearchHit]) -> list[str]:
    """The documents that ``thought`` (stored items), and for a ticket page what its thought
    changed: where the search "the ticket for hall <its hall>" ranks it with its thought (as
    indexed) and where it would rank had it been indexed without."""
    halls = {ticket_page_text(ticket): hall for ticket, (_, hall, _) in world.tickets.items()}
    never = ReasoningBudget(mode="never")
    lines = []
    for item in thought:
        lines.append(f"  {describe_item(item, world)}  gate {item.gate_score:.2f}, thought {item.thought!r}")
        if item.text not in halls:
            continue
        query = f"the ticket for hall {halls[item.text]}"
        hits = index.search(query, k=index.count())
        with_thought = next(rank for rank, hit in enumerate(hits, 1) if hit.id == item.id)
        page = {"text": item.text, "image": item.image_path}  # as the index embedded it, without a thought
        [plain] = index.embedder.encode([page], role="document", budget=never)
        plain_score = float(plain.vector @ index.last_query.vector)
        without = 1 + sum(hit.score > plain_score for hit in hits if hit.id != item.id)
        lines.append(f"      {query!r} ranks it {with_thought} with its thought, {without} without")
    return lines


def lookup_summary(index: TWNIndex, world: MiniWorld) -> str:
    """Search "the card of the friend of X" for every held-out name and "the ticket for hall H"
    for every held-out ticket: how many find the right card or ticket first, and how many
    thought."""
    lookups = {
        "card": [(f"the card of the friend of {n}", card_page_text(world.friend_card(n))) for n in world.names("test")],
        "ticket": [
            (f"the ticket for hall {world.tickets[t][1]}", ticket_page_text(t)) for t in world.ticket_numbers("test")
        ],
    }
    right, thought = {}, {}
    for kind, pairs in lookups.items():
        right[kind] = thought[kind] = 0
        for query, expected in pairs:
            [best] = index.search(query, k=1)
            thought[kind] += index.last_query.thought is not None
            right[kind] += best.text == expected
    cards, tickets = len(lookups["card"]), len(lookups["ticket"])
    return (
        "held-out lookups (names and tickets TWN training never saw): 'the card of the friend of X' finds the "
        f"right card first for {right['card']} of {cards} names ({thought['card']} queries thought), "
        f"'the ticket for hall H' the right ticket for {right['ticket']} of {tickets} halls "
        f"({thought['ticket']} queries thought)"
    )


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checkpoint, world = mini_model_path(), mini_world()
    documents = DEMO_OUTPUT / "documents"
    write_world_documents(world, documents)
    # fp32: the model is small, and it was trained and measured in fp32 (bf16 garbles its facts).
    embedder = TWNEmbedder.from_pretrained(checkpoint, dtype="float32")
    query_budget = dataclasses.replace(embedder.default_budget("query"), token_budget=QUERY_TOKEN_BUDGET)
    document_budget = dataclasses.replace(embedder.default_budget("document"), max_think_ratio=DOCUMENT_THINK_RATIO)
    index = TWNIndex.open(
        DEMO_OUTPUT / "index",
        embedder,
        query_budget=query_budget,
        document_budget=document_budget,
        # Pages rendered at the model's image cap, as its training pages were (benchmarks/twn_mini).
        loader_settings=LoaderSettings(max_image_pixels=embedder.config.max_image_pixels),
    )
    print(f"model: the bundled miniature TWN ({checkpoint}, dim {embedder.dimension}, {embedder.model.dtype})")
    print(f"indexing {documents} into {index.location}")
    report = index.add([documents])
    print("\n".join(report.summary_lines()))
    for line in report.failure_lines():
        print(line, file=sys.stderr)
    thought = index.items(where={THOUGHT_USED_KEY: True})
    print(f"\n{len(thought)} documents thought (the document budget, spent where a page does not show what it is):")
    print("\n".join(document_thoughts(index, world, thought)))
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
