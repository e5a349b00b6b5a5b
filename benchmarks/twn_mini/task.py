"""A synthetic retrieval world where some queries and some documents need a thought and the rest do not.

The world (seeded, reproducible): made-up names, each with a card number, a colour and a
ticket. Documents are number cards ("This is card number 17."), colour pictures (images),
ticket pages ("Ticket 83.") and, in the train split only, name notes. Query kinds:

- ``direct-number`` "number 17" -> card 17, and ``direct-colour`` "a red picture" -> the red
  picture: the answer is on the surface, a thought is needless;
- ``lookup-number`` "the card of zorp" -> zorp's card: the answer is a fact the backbone
  learned in pre-training, which the query's thought writes out ("Fact: zorp has card 17.");
- ``lookup-ticket`` "the ticket of zorp" -> zorp's ticket. The world states a ticket's owner
  in one direction only ("Fact: ticket 83 belongs to zorp."): like a language model that
  learned "A is B" and cannot answer "what is B?" (the reversal curse), the backbone cannot
  recall zorp's ticket from the name, so no query thought finds it (one that tries writes
  what it knows of zorp, its card, and goes astray); but the ticket page's own thought writes
  its owner down and is then found by name. This is where **documents** need to think.
- ``direct-name`` "the note of zorp" -> "This note belongs to zorp." (train split only, for
  every name): the embedding learns to match a name it reads in a query with the same name
  read in a document, for every name, so that a ticket page's thought can be matched to a
  held-out name. It reveals no fact.

Reference thoughts: a lookup query's states its fact; every document has one, which for a
card, a picture or a note only says what the document shows ("Fact: this is card 17."), cheap
and harmless, and for a ticket names its owner. Direct and ticket queries have none: thinking
on them is what the gate must learn to skip. Facts start with "Fact:" so that names and
numbers inside them are the same tokens (with a leading space) as in queries and documents.

Splits: names are split into train / validation / test; the pre-training corpus states every
fact, in the forms the thoughts use (it is the world knowledge and the instruction following
of a pretrained MLLM), while TWN training uses only the train split and the gate only
validation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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
FIRST_TICKET = 60  # ticket numbers follow the card numbers, so the two never share a number
REASONING_KINDS = ("lookup-number",)
DIRECT_KINDS = ("direct-number", "direct-colour", "direct-name")
# Queries that need a thought on the document side (the positive's), not on their own.
DOCUMENT_REASONING_KINDS = ("lookup-ticket",)


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
    tickets: dict[str, int] = field(default_factory=dict)  # name -> ticket number

    def split(self, name: str) -> list[Query]:
        return [q for q in self.queries if q.split == name]

    def split_documents(self, name: str) -> list[Document]:
        """The documents a split's queries are ranked against: every card and picture, and
        the tickets of the split's entities."""
        return [d for d in self.documents if d.split in (None, name)]


def card_id(n: int) -> str:
    return f"card-{n}"


def picture_id(colour: str) -> str:
    return f"picture-{colour}"


def card_text(n: int) -> str:
    return f"This is card number {n}."


def ticket_id(n: int) -> str:
    return f"ticket-{n}"


def ticket_text(n: int) -> str:
    return f"Ticket {n}."


def note_id(name: str) -> str:
    return f"note-{name}"


def note_text(name: str) -> str:
    return f"This note belongs to {name}."


def card_thought(n: int) -> str:
    return f"Fact: this is card {n}."


def picture_thought(colour: str) -> str:
    return f"Fact: a {colour} picture."


def note_thought(name: str) -> str:
    return f"Fact: this note belongs to {name}."


def card_fact(name: str, card: int) -> str:
    return f"Fact: {name} has card {card}."


def card_query(name: str) -> str:
    return f"the card of {name}"


def ticket_fact(n: int, name: str) -> str:
    """The one direction the world states a ticket's owner in (see the module docstring)."""
    return f"Fact: ticket {n} belongs to {name}."


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
    ticket_numbers = random.Random(f"tickets-{seed}").sample(
        range(FIRST_TICKET, FIRST_TICKET + 2 * NUM_ENTITIES), len(names)
    )
    tickets = dict(zip(names, ticket_numbers))
    documents = [Document(card_id(n), card_text(n), thought=card_thought(n)) for n in range(NUM_CARDS)]
    documents += [Document(picture_id(c), colour=c, thought=picture_thought(c)) for c in COLOURS]
    documents += [
        Document(ticket_id(t), ticket_text(t), thought=ticket_fact(t, name), split=entity_split[name])
        for name, t in tickets.items()
    ]
    documents += [Document(note_id(n), note_text(n), thought=note_thought(n), split="train") for n in names]
    world = World(seed, entities, entity_split, documents, tickets=tickets)
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
    for name, (card, _) in entities.items():
        split = entity_split[name]
        queries.append(Query("lookup-number", card_query(name), card_id(card), card_fact(name, card), split))
        queries.append(Query("lookup-ticket", f"the ticket of {name}", ticket_id(tickets[name]), None, split))
        queries.append(Query("direct-name", f"the note of {name}", note_id(name), None, "train"))
    return world


def entity_facts(world: World) -> list[str]:
    """Every entity fact, in the forms the thoughts use: the arbitrary associations
    pre-training must store, and the question-then-fact lines of instruction data."""
    lines = []
    for name, (card, colour) in world.entities.items():
        fact = card_fact(name, card)
        lines += [fact, f"The card of {name} is {card}.", f"{card_query(name)}. {fact}", f"About {name}. {fact}"]
        lines += [f"Fact: {name} is {colour}."]
    for name, ticket in world.tickets.items():
        # Only ticket -> owner, never owner -> ticket; the ticket page read first, then the fact.
        lines += [ticket_fact(ticket, name), f"{ticket_text(ticket)} {ticket_fact(ticket, name)}"]
    return lines


def general_sentences(world: World) -> list[str]:
    """Every card, ticket and note text, alone and followed by what it shows."""
    lines = [card_text(n) for n in range(NUM_CARDS)]
    lines += [f"{card_text(n)} {card_thought(n)}" for n in range(NUM_CARDS)]
    tickets = range(FIRST_TICKET, FIRST_TICKET + 2 * NUM_ENTITIES)
    lines += [ticket_text(n) for n in tickets] + [f"ticket {n}" for n in tickets]
    lines += [f"{note_text(name)} {note_thought(name)}" for name in world.entities]
    return lines


def pretraining_corpus(world: World) -> list[str]:
    """The backbone's world knowledge as plain sentences (colour pictures are captioned
    separately, with images)."""
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
    """``card``, ``picture``, ``ticket`` or ``note``."""
    return doc.doc_id.split("-", 1)[0]


def document_side(doc: Document, picture_dir: str) -> dict:
    """A document as a training-data side: text for cards, an image path for pictures."""
    if doc.colour is None:
        return {"text": doc.text}
    return {"image": f"{picture_dir}/{doc.colour}.png"}


def write_jsonl(world: World, out_dir, negatives_per_query: int = 3, picture_dir: str = "pictures") -> dict[str, str]:
    """Write ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (the twn-rag training
    format) and the colour pictures under ``out_dir``; returns split -> path.

    Every line lists hard negatives (documents of the split of the same kind as the
    positive: cards, pictures, tickets or notes), chosen so that every document of the split
    (``World.split_documents``) is in the file: the evaluator's corpus is the split's whole
    collection. A positive that needs a
    thought carries its reference thought (``positive_thought``).
    """
    import json
    from pathlib import Path

    out = Path(out_dir)
    (out / picture_dir).mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(COLOURS):
        colour_picture(colour, seed=world.seed * 100 + i).save(out / picture_dir / f"{colour}.png")
    by_id = {d.doc_id: d for d in world.documents}
    rng = random.Random(world.seed)
    paths = {}
    for split in SPLITS:
        documents = world.split_documents(split)
        unseen = {d.doc_id for d in documents} - {q.positive for q in world.split(split)}
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i, query in enumerate(world.split(split)):
                positive = by_id[query.positive]
                same_kind = [d for d in documents if kind_of(d) == kind_of(positive) and d is not positive]
                others = [d for d in same_kind if d.doc_id in unseen][:1]
                others += rng.sample(
                    [d for d in same_kind if d not in others], min(negatives_per_query, len(same_kind)) - len(others)
                )
                unseen -= {d.doc_id for d in others}
                record = {
                    "id": f"{split}-{i}-{query.kind}",
                    "query": query.text,
                    "positive": document_side(positive, picture_dir),
                    "negatives": [document_side(d, picture_dir) for d in others],
                }
                if query.thought is not None:
                    record["query_thought"] = query.thought
                if positive.thought is not None:
                    record["positive_thought"] = positive.thought
                f.write(json.dumps(record) + "\n")
        if unseen:
            raise ValueError(f"{split}: documents {sorted(unseen)} are in no line; use more negatives_per_query")
        paths[split] = str(path)
    return paths
