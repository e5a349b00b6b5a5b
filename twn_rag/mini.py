"""The bundled miniature TWN: a small model trained on CPU, offline, with this project's own
pipeline on a synthetic world (``benchmarks/twn_mini``), shipped so that the demo and the
notebooks show real thoughts and real hits without downloading anything.

The world: made-up names, each with a card number and a friend, and tickets, each for a seat
in a hall. Documents are number cards ("This is card number 17."), colour pictures and
ticket pages ("Ticket 83."). Its reasoning adapter writes the facts a query needs ("the card
of the friend of kazo" -> "Fact: kazo has friend lony. Fact: lony has card 17.") and the
fact a document hides (a ticket page does not show its hall; its thought writes it down,
"Fact: ticket 83 is for seat 171. Fact: seat 171 is in hall 301.", so that "the ticket for
hall 301" can find it); its gate skips thinking where the answer is on the surface ("number
12", a card page) and where a query thought cannot help ("the ticket for hall 301": the
backbone knows tickets' halls, not halls' tickets). It knows nothing else: use it to see the
mechanics, not as a general embedder; how it was built and measured is in
``benchmarks/README.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MINI_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "twn-mini"
WORLD_FILENAME = "world.json"
# The held-out test split it was measured on (the training JSONL format, pictures and page
# images beside it).
TEST_SPLIT_DIRNAME = "test-split"


def card_page_text(card: int) -> str:
    """What a number card's page says."""
    return f"This is card number {card}."


def ticket_page_text(ticket: int) -> str:
    """What a ticket's page says (its number only: its seat and hall are not on it)."""
    return f"Ticket {ticket}."


def write_world_pdf(path: str | Path, texts: list[str]) -> Path:
    """A PDF of the world's pages, one text per page and nothing else on it (no shapes), so
    that a page renders the same in whichever file and at whichever position it is: the build
    trains on pages written by this function and loaded by ``twn_rag.loaders``, the demo
    indexes pages written by it."""
    from twn_rag.samples import write_sample_pdf

    return write_sample_pdf(path, texts, shapes=False)


def load_world_pages(path: str | Path, texts: list[str], max_image_pixels: int) -> list:
    """Write ``texts`` as a world PDF at ``path`` (``write_world_pdf``) and load its pages as an
    index does: ``twn_rag.loaders`` items with the page's text layer and the page rendered at
    ``max_image_pixels``, one per text, in order. Raises ``ValueError`` naming the page whose
    text layer is not its text."""
    from twn_rag.loaders import FileRef, LoaderSettings, iter_file_items

    pdf = write_world_pdf(path, texts)
    items = list(iter_file_items(FileRef.describe(pdf), LoaderSettings(max_image_pixels=max_image_pixels)))
    for text, item in zip(texts, items, strict=True):
        if item.text != text:
            raise ValueError(f"{pdf} page {item.metadata['page']}: text {item.text!r}, expected {text!r}")
    return items


@dataclass(frozen=True)
class MiniWorld:
    """What the bundled model knows: ``entities`` name -> (card, colour, split), ``friends``
    name -> friend, ``tickets`` ticket number -> (seat, hall, split), and the RGB value of each
    colour. Names and tickets of the ``test`` split were never seen in TWN training."""

    entities: dict[str, tuple[int, str, str]]
    colours: dict[str, tuple[int, int, int]]
    num_cards: int
    tickets: dict[int, tuple[int, int, str]]
    friends: dict[str, str]

    def friend_card(self, name: str) -> int:
        """The answer to "the card of the friend of <name>"."""
        return self.entities[self.friends[name]][0]

    def names(self, split: str = "test") -> list[str]:
        return sorted(n for n, (_, _, s) in self.entities.items() if s == split)

    def ticket_numbers(self, split: str = "test") -> list[int]:
        return sorted(t for t, (_, _, s) in self.tickets.items() if s == split)


def mini_model_path() -> Path:
    """The bundled checkpoint (released layout, its backbone inside)."""
    if not (MINI_MODEL_DIR / "gate_mlp.pt").is_file():
        raise FileNotFoundError(
            f"the bundled model is missing from {MINI_MODEL_DIR}; rebuild it with "
            "`python benchmarks/twn_mini/build.py --ship` (make mini)"
        )
    return MINI_MODEL_DIR


def mini_world() -> MiniWorld:
    """The world the bundled model was trained on."""
    data = json.loads((mini_model_path() / WORLD_FILENAME).read_text(encoding="utf-8"))
    return MiniWorld(
        entities={name: (e["card"], e["colour"], e["split"]) for name, e in data["entities"].items()},
        colours={name: tuple(rgb) for name, rgb in data["colours"].items()},
        num_cards=data["num_cards"],
        tickets={int(t): (e["seat"], e["hall"], e["split"]) for t, e in data["tickets"].items()},
        friends={name: e["friend"] for name, e in data["entities"].items()},
    )


def mini_test_split() -> Path:
    """The JSONL file of the test split the bundled model was measured on (queries, positives,
    hard negatives; together every test document), for ``twn_rag.training.load_examples``."""
    return mini_model_path() / TEST_SPLIT_DIRNAME / "test.jsonl"
