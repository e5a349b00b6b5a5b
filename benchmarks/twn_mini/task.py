"""A synthetic retrieval world where some queries and some documents need a thought and the rest do not.

The world (seeded, reproducible): made-up names, each with a card number and a friend (another
name), and tickets, each for a seat in a hall. Documents are number cards ("This is card
number 17."), colour pictures (images), ticket pages ("Ticket 83.") and, in the train split
only, hall plates ("This is hall 301."). Query kinds:

- ``direct-number`` "number 17" -> card 17, ``direct-colour`` "a red picture" -> the red
  picture, ``direct-hall`` "hall 301" -> its plate (train only): the answer is on the surface,
  a thought is needless;
- ``lookup-number`` "the card of the friend of zorp" -> the card of zorp's friend: two facts the
  backbone learned in pre-training, chained, which the query's thought writes out ("Fact: zorp has
  friend kalo. Fact: kalo has card 17."). One fact about a name is in the backbone's plain
  reading of it (an earlier world with one-fact lookups found their cards without thinking);
  the chain of two is not: it needs the thought.
- ``lookup-ticket`` "the ticket for hall 301" -> the ticket whose seat is in that hall. The
  world states the chain in one direction only ("Fact: ticket 83 is for seat 171.", "Fact:
  seat 171 is in hall 301."): like a language model that learned "A is B" and cannot answer
  "what is B?" (the reversal curse), the backbone cannot recall the ticket from the hall, so
  no query thought finds it (one that tries writes something else and goes astray); but the
  ticket page's own thought writes the chain down ("Fact: ticket 83 is for seat 171. Fact:
  seat 171 is in hall 301.") and the page is then found by its hall. This is where
  **documents** need to think. The hall plates teach the embedding to match every hall
  number, and reveal no ticket. (With one fact, ticket -> seat, and seat plates, the plain
  reading of a ticket page already carried its seat: found without thinking.)

Reference thoughts: a lookup query's states its facts; every document has one, which for a
card, a picture or a plate only says what the document shows ("Fact: this is card 17."),
cheap and harmless, and for a ticket states its chain. Direct and ticket queries have none:
thinking on them is what the gate must learn to skip. Pre-training never puts a query's or a
page's own words right before the fact it hides (that would put the answer into the plain,
no-think reading of them).

Splits: names and tickets are split into train / validation / test; the pre-training corpus
states every fact (it is the world knowledge of a pretrained MLLM), while TWN training uses
only the train split and the gate only validation. Like an instruction-tuned MLLM, the
backbone also answers one-fact questions in the chat the reasoning adapter writes in
(``one_fact_answers``: a name's friend and its own card, a ticket page's seat, for every name
and ticket), so that a thought starts from the query's own name or page and recalls each fact
in the chat as well as in plain text; no answer chains two facts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from twn_rag.mini import card_page_text as card_text
from twn_rag.mini import load_world_pages
from twn_rag.mini import ticket_page_text as ticket_text

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black", "grey")
COLOUR_RGB = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 40),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}
NUM_CARDS = 60
NUM_ENTITIES = 48
SYLLABLES = ("ka", "zo", "rim", "bel", "tu", "vex", "ny", "dor", "pli", "sam", "gu", "fen", "lo", "qui")
SPLITS = ("train", "validation", "test")
# Ticket numbers follow the card numbers, seat numbers the tickets, hall numbers the seats:
# no two kinds share a number.
FIRST_TICKET = 60
FIRST_SEAT = FIRST_TICKET + 2 * NUM_ENTITIES
FIRST_HALL = FIRST_SEAT + 2 * NUM_ENTITIES
REASONING_KINDS = ("lookup-number",)
DIRECT_KINDS = ("direct-number", "direct-colour", "direct-hall")
# Queries that need a thought on the document side (the positive's), not on their own.
DOCUMENT_REASONING_KINDS = ("lookup-ticket",)
# Pages are rendered at the model's image cap (``max_image_pixels`` of the build's config), as
# the demo's index loads them.
PAGE_PIXELS = 64 * 64


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str = ""
    colour: str | None = None  # set for picture documents (an image of that colour)
    thought: str | None = None  # reference thought (None: the document shows what it is)
    split: str | None = None  # the split of the entity it belongs to (None: every split's)


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    positive: str  # doc_id
    thought: str | None  # reference thought (None: a direct query, nothing to think)
    split: str


@dataclass
class World:
    seed: int
    entities: dict[str, tuple[int, str]]  # name -> (card, colour)
    entity_split: dict[str, str]
    documents: list[Document]
    queries: list[Query] = field(default_factory=list)
    tickets: dict[int, tuple[int, int, str]] = field(default_factory=dict)  # ticket -> (seat, hall, split)
    friends: dict[str, str] = field(default_factory=dict)  # name -> friend

    def split(self, name: str) -> list[Query]:
        return [q for q in self.queries if q.split == name]

    def split_documents(self, name: str) -> list[Document]:
        """The documents a split's queries are ranked against: every card and picture, and
        the split's tickets."""
        return [d for d in self.documents if d.split in (None, name)]


def card_id(n: int) -> str:
    return f"card-{n}"


def picture_id(colour: str) -> str:
    return f"picture-{colour}"


def ticket_id(n: int) -> str:
    return f"ticket-{n}"


def hall_id(n: int) -> str:
    return f"hall-{n}"


def hall_text(n: int) -> str:
    return f"This is hall {n}."


def card_thought(n: int) -> str:
    return f"Fact: this is card {n}."


def picture_thought(colour: str) -> str:
    return f"Fact: a {colour} picture."


def hall_thought(n: int) -> str:
    return f"Fact: this is hall {n}."


def card_fact(name: str, card: int) -> str:
    return f"Fact: {name} has card {card}."


def friend_fact(name: str, friend: str) -> str:
    return f"Fact: {name} has friend {friend}."


def card_query(name: str) -> str:
    """The two-fact lookup: the card of ``name``'s friend."""
    return f"the card of the friend of {name}"


def ticket_fact(n: int, seat: int) -> str:
    """The one direction the world states a ticket's seat in (see the module docstring)."""
    return f"Fact: ticket {n} is for seat {seat}."


def seat_fact(seat: int, hall: int) -> str:
    return f"Fact: seat {seat} is in hall {hall}."


def ticket_thought(n: int, seat: int, hall: int) -> str:
    return f"{ticket_fact(n, seat)} {seat_fact(seat, hall)}"


def ticket_query(hall: int) -> str:
    return f"the ticket for hall {hall}"


def _names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(2)))
    return sorted(names)


# Validation is large enough to train the gate on (it needs held-out entities, see build.py).
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)


def _split_of(rng: random.Random, fractions=SPLIT_FRACTIONS) -> str:
    r = rng.random()
    return "train" if r < fractions[0] else "validation" if r < fractions[0] + fractions[1] else "test"


def build_world(seed: int = 0) -> World:
    """The whole world and its queries, deterministically from ``seed``."""
    rng = random.Random(seed)
    names = _names(rng, NUM_ENTITIES)
    cards = rng.sample(range(NUM_CARDS), NUM_ENTITIES)
    entities = {name: (card, rng.choice(COLOURS)) for name, card in zip(names, cards)}
    order = names[:]
    rng.shuffle(order)
    n_train, n_val = int(SPLIT_FRACTIONS[0] * len(order)), int(SPLIT_FRACTIONS[1] * len(order))
    entity_split = {
        name: "train" if i < n_train else "validation" if i < n_train + n_val else "test"
        for i, name in enumerate(order)
    }
    # Generators of their own, so each part of the world is drawn independently of the others.
    circle = names[:]
    random.Random(f"friends-{seed}").shuffle(circle)
    friends = {a: b for a, b in zip(circle, circle[1:] + circle[:1])}  # each name is one name's friend
    ticket_rng = random.Random(f"tickets-{seed}")
    numbers = ticket_rng.sample(range(FIRST_TICKET, FIRST_SEAT), NUM_ENTITIES)
    seats = ticket_rng.sample(range(FIRST_SEAT, FIRST_HALL), NUM_ENTITIES)
    halls = ticket_rng.sample(range(FIRST_HALL, FIRST_HALL + 2 * NUM_ENTITIES), NUM_ENTITIES)
    # as many tickets per split as names: ticket i is in the split of name i
    tickets = {t: (s, h, entity_split[name]) for t, s, h, name in zip(numbers, seats, halls, order)}
    documents = [Document(card_id(n), card_text(n), thought=card_thought(n)) for n in range(NUM_CARDS)]
    documents += [Document(picture_id(c), colour=c, thought=picture_thought(c)) for c in COLOURS]
    documents += [
        Document(ticket_id(t), ticket_text(t), thought=ticket_thought(t, seat, hall), split=split)
        for t, (seat, hall, split) in tickets.items()
    ]
    documents += [
        Document(hall_id(h), hall_text(h), thought=hall_thought(h), split="train") for _, h, _ in tickets.values()
    ]
    world = World(seed, entities, entity_split, documents, friends=friends, tickets=tickets)
    queries = world.queries
    for n in range(NUM_CARDS):
        queries.append(Query("direct-number", f"number {n}", card_id(n), None, _split_of(rng)))
    for colour in COLOURS:
        for template, split in (
            (f"a {colour} picture", "train"),
            (f"something {colour}", "validation"),
            (f"the {colour} one", "test"),
        ):
            queries.append(Query("direct-colour", template, picture_id(colour), None, split))
    for name in names:
        friend = friends[name]
        card = entities[friend][0]
        thought = f"{friend_fact(name, friend)} {card_fact(friend, card)}"
        queries.append(Query("lookup-number", card_query(name), card_id(card), thought, entity_split[name]))
    for ticket, (_, hall, split) in tickets.items():
        queries.append(Query("lookup-ticket", ticket_query(hall), ticket_id(ticket), None, split))
        queries.append(Query("direct-hall", f"hall {hall}", hall_id(hall), None, "train"))
    return world


def entity_facts(world: World) -> list[str]:
    """Every fact: the arbitrary associations pre-training must store, each alone and after
    "About <subject>." (never after a query's or a page's own words), and each name's two
    facts chained, as a thought states them."""
    lines = []
    for name, (card, colour) in world.entities.items():
        friend = world.friends[name]
        fact, friendship = card_fact(name, card), friend_fact(name, friend)
        # "the friend of X." before the first fact teaches to copy the name a lookup ends
        # with (the reasoning adapter otherwise wrote train names for 8 of 12 held-out ones);
        # the plain reading of the lookup may then carry the friend, never the friend's card.
        lines += [fact, f"About {name}. {fact}", friendship, f"the friend of {name}. {friendship}"]
        lines += [f"{friendship} {card_fact(friend, world.entities[friend][0])}", f"Fact: {name} is {colour}."]
    for ticket, (seat, hall, _) in world.tickets.items():
        # Only ticket -> seat -> hall, never backwards.
        first, second = ticket_fact(ticket, seat), seat_fact(seat, hall)
        # Not chained in one line: a model that reads a ticket number right before its hall
        # learns ticket -> hall directly, and its plain reading of a ticket page then carries
        # the hall (found without thinking for about half the held-out tickets).
        lines += [first, f"About ticket {ticket}. {first}", second, f"About seat {seat}. {second}"]
    return lines


class OneFactAnswer(NamedTuple):
    """A one-fact question and its answer in the reasoning chat (``one_fact_answers``)."""

    role: str  # "query" or "document"
    question: str  # the user turn's text
    answer: str  # the assistant turn
    page: str | None = None  # a document's doc_id: its rendered page goes with the text


def one_fact_answers(world: World) -> list[OneFactAnswer]:
    """Each name's friend, each name's own card and each ticket page's seat, asked and
    answered in the chat format the reasoning adapter writes in (``pretrain.chat_examples``),
    as an instruction-tuned MLLM answers a one-fact question about what it knows or sees (a
    ticket is asked as its page: the text and the rendered page, as an index loads it). One
    fact only: a lookup's chain (a name's friend's card, a seat's hall) is what SFT teaches the
    thought to write, and no answer states it after its question. Without the friend and
    ticket answers the reasoning adapter learned on 24 train names to start the thought with a
    name, not to copy it (build seed 0: 8 of 12 validation and 6 of 12 test lookups began with
    another name); without the card answers the backbone recalled the friend's card wrongly
    in the chat after a right first fact (19 of 24 held-out names right, against 24 of 24 in
    plain text)."""
    answers = [
        OneFactAnswer("query", f"the friend of {name}", friend_fact(name, friend))
        for name, friend in world.friends.items()
    ]
    answers += [
        OneFactAnswer("query", f"the card of {name}", card_fact(name, card))
        for name, (card, _) in world.entities.items()
    ]
    answers += [
        OneFactAnswer("document", ticket_text(t), ticket_fact(t, seat), page=ticket_id(t))
        for t, (seat, _, _) in world.tickets.items()
    ]
    return answers


def general_sentences(world: World) -> list[str]:
    """Every card, ticket and hall text, alone and (but tickets) followed by what it shows."""
    lines = [card_text(n) for n in range(NUM_CARDS)]
    lines += [f"{card_text(n)} {card_thought(n)}" for n in range(NUM_CARDS)]
    tickets = range(FIRST_TICKET, FIRST_SEAT)
    lines += [ticket_text(n) for n in tickets] + [f"ticket {n}" for n in tickets]
    lines += [f"{hall_text(h)} {hall_thought(h)}" for _, h, _ in world.tickets.values()]
    return lines


def pretraining_corpus(world: World) -> list[str]:
    """The backbone's world knowledge as plain sentences (colour pictures are captioned
    separately, with images, and ``one_fact_answers`` are put into chats by pretrain.py)."""
    return entity_facts(world) + general_sentences(world)


def colour_picture(colour: str, seed: int = 0, size: int = 64):
    """A picture of ``colour``: the colour fills most of the frame, with a little noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.array(COLOUR_RGB[colour], dtype=np.int16)
    pixels = base + rng.integers(-12, 13, size=(size, size, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def kind_of(doc: Document) -> str:
    """``card``, ``picture``, ``ticket`` or ``hall``."""
    return doc.doc_id.split("-", 1)[0]


def page_file(page_dir: str | Path, doc_id: str) -> str:
    """Where ``write_pages`` saves a page's rendered image: ``<page_dir>/<doc_id>.png``."""
    return f"{page_dir}/{doc_id}.png"


def document_side(doc: Document, picture_dir: str, page_dir: str) -> dict:
    """A document as a training-data side: a page's text and its rendered image (``page_dir``,
    see ``write_pages``), or a picture's image path."""
    if doc.colour is None:
        return {"text": doc.text, "image": page_file(page_dir, doc.doc_id)}
    return {"image": f"{picture_dir}/{doc.colour}.png"}


def write_pages(
    world: World, out_dir: str | Path, page_dir: str = "pages", max_image_pixels: int = PAGE_PIXELS
) -> None:
    """Write the world's pages (cards, each split's tickets, hall plates) as PDFs under
    ``out_dir`` and load them as an index does (``twn_rag.mini.load_world_pages``: page text
    and the page rendered at ``max_image_pixels``), and save each page's image as
    ``<page_dir>/<doc_id>.png``. Raises ``ValueError`` if a page's text layer is not the
    document's text."""
    out = Path(out_dir)
    (out / page_dir).mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Document]] = {}
    for doc in world.documents:
        if doc.colour is None:
            files.setdefault(f"{kind_of(doc)}s-{doc.split or 'all'}.pdf", []).append(doc)
    for name, documents in files.items():
        items = load_world_pages(out / "pdf" / name, [d.text for d in documents], max_image_pixels)
        for doc, item in zip(documents, items):
            item.image.save(out / page_file(page_dir, doc.doc_id))


# Counterfactual pairs per train lookup (see ``counterfactual_pairs``).
COUNTERFACTUALS_PER_LOOKUP = 2


@dataclass(frozen=True)
class Counterfactual:
    """A think-view-only training pair: a lookup whose thought states made-up facts, and the
    document those facts point to (with ``positive_thought`` on that side, if any)."""

    kind: str
    text: str
    positive: str
    query_thought: str | None
    positive_thought: str | None


def counterfactual_pairs(world: World, per_lookup: int = COUNTERFACTUALS_PER_LOOKUP) -> list[Counterfactual]:
    """For every train lookup, ``per_lookup`` pairs with the same names or ticket but made-up
    facts in the thought ("the card of the friend of zorp" with "Fact: zorp has friend kalo.
    Fact: kalo has card 33." -> card 33): the answer is whatever the thought says, so the
    embedding learns to follow the thought rather than memorise the names or ticket numbers it
    was trained on, which it would otherwise also do (its think view found held-out names'
    cards in only 3 of 12 cases with exact thoughts). Only train names, tickets, seats and
    halls appear; SFT uses them in the think view only (``think_view_only``), so no made-up
    fact is ever taught to the reasoning adapter."""
    rng = random.Random(f"counterfactual-{world.seed}")
    names = sorted(n for n, s in world.entity_split.items() if s == "train")
    tickets = sorted(t for t, (_, _, s) in world.tickets.items() if s == "train")
    seats = [world.tickets[t][0] for t in tickets]
    halls = [world.tickets[t][1] for t in tickets]
    pairs = []
    for name in names:
        for _ in range(per_lookup):
            friend = rng.choice([n for n in names if n not in (name, world.friends[name])])
            card = rng.randrange(NUM_CARDS)
            thought = f"{friend_fact(name, friend)} {card_fact(friend, card)}"
            pairs.append(Counterfactual("lookup-number", card_query(name), card_id(card), thought, card_thought(card)))
    for ticket in tickets:
        for _ in range(per_lookup):
            seat, hall = rng.choice(seats), rng.choice([h for h in halls if h != world.tickets[ticket][1]])
            pairs.append(
                Counterfactual(
                    "lookup-ticket", ticket_query(hall), ticket_id(ticket), None, ticket_thought(ticket, seat, hall)
                )
            )
    return pairs


def write_jsonl(
    world: World,
    out_dir,
    negatives_per_query: int = 3,
    picture_dir: str = "pictures",
    page_dir: str = "pages",
    page_pixels: int = PAGE_PIXELS,
) -> dict[str, str]:
    """Write ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (the twn-rag training
    format), ``sft.jsonl`` (the train lines and the counterfactual pairs, for SFT), the colour
    pictures and the rendered pages (``write_pages``) under ``out_dir``; returns name -> path
    (the splits and ``sft``).

    Every line lists hard negatives (documents of the split of the same kind as the
    positive: cards, pictures, tickets or halls), chosen so that every document of the split
    (``World.split_documents``) is in the file: the evaluator's corpus is the split's whole
    collection. A positive that needs a thought carries its reference thought
    (``positive_thought``).
    """
    import json

    out = Path(out_dir)
    (out / picture_dir).mkdir(parents=True, exist_ok=True)
    write_pages(world, out, page_dir, page_pixels)
    for i, colour in enumerate(COLOURS):
        colour_picture(colour, seed=world.seed * 100 + i).save(out / picture_dir / f"{colour}.png")
    by_id = {d.doc_id: d for d in world.documents}
    rng = random.Random(world.seed)
    paths = {}

    def negatives(positive: Document, documents: list[Document], unseen: set[str]) -> list[Document]:
        same_kind = [d for d in documents if kind_of(d) == kind_of(positive) and d is not positive]
        others = [d for d in same_kind if d.doc_id in unseen][:1]
        others += rng.sample(
            [d for d in same_kind if d not in others], min(negatives_per_query, len(same_kind)) - len(others)
        )
        unseen -= {d.doc_id for d in others}
        return others

    for split in SPLITS:
        documents = world.split_documents(split)
        unseen = {d.doc_id for d in documents} - {q.positive for q in world.split(split)}
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i, query in enumerate(world.split(split)):
                positive = by_id[query.positive]
                record = {
                    "id": f"{split}-{i}-{query.kind}",
                    "query": query.text,
                    "positive": document_side(positive, picture_dir, page_dir),
                    "negatives": [
                        document_side(d, picture_dir, page_dir) for d in negatives(positive, documents, unseen)
                    ],
                }
                if query.thought is not None:
                    record["query_thought"] = query.thought
                if positive.thought is not None:
                    record["positive_thought"] = positive.thought
                f.write(json.dumps(record) + "\n")
        if unseen:
            raise ValueError(f"{split}: documents {sorted(unseen)} are in no line; use more negatives_per_query")
        paths[split] = str(path)
    sft = out / "sft.jsonl"
    documents = world.split_documents("train")
    with sft.open("w", encoding="utf-8") as f:
        f.write(Path(paths["train"]).read_text(encoding="utf-8"))
        for i, pair in enumerate(counterfactual_pairs(world)):
            positive = by_id[pair.positive]
            record = {
                "id": f"counterfactual-{i}-{pair.kind}",
                "query": pair.text,
                "positive": document_side(positive, picture_dir, page_dir),
                "negatives": [document_side(d, picture_dir, page_dir) for d in negatives(positive, documents, set())],
                "think_view_only": True,
            }
            for key, thought in (("query_thought", pair.query_thought), ("positive_thought", pair.positive_thought)):
                if thought is not None:
                    record[key] = thought
            f.write(json.dumps(record) + "\n")
    paths["sft"] = str(sft)
    return paths
