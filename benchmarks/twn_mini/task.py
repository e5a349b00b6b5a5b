"""A synthetic retrieval world where some queries need a reasoning step and others do not.

The world (seeded, reproducible): made-up entities, each with a card number and a colour.
Documents are number cards (text) and colour pictures (images). Query kinds:

- ``direct-number`` "number 17" -> card 17, and ``direct-colour`` "a red picture" -> the red
  picture: the answer is on the surface, thinking is needless (and may mislead);
- ``lookup-number`` "the card of zorp" -> zorp's card, ``lookup-colour`` "the colour of zorp"
  -> zorp's picture: the answer is a fact the backbone learned in pre-training;
- ``arithmetic`` "number 12 plus 5" -> card 17;
- ``composition`` "the card of zorp plus 3" -> zorp's card + 3.

A reasoning query's reference thought states the fact ("Fact: zorp has card 17."), so a model
that thinks writes the answer out and the embedding only has to match it. Facts start with
"Fact:" so that names and numbers inside them are the same tokens (with a leading space) as
in queries and documents: copying them needs no mapping between token variants.

Splits: entities and arithmetic pairs are split into train / validation / test; the
pre-training corpus states every fact (it is the world knowledge a pretrained MLLM would
have), while TWN training uses only the train split and calibration only validation.
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
MAX_ADDEND = 9
SYLLABLES = ("ka", "zo", "rim", "bel", "tu", "vex", "ny", "dor", "pli", "sam", "gu", "fen", "lo", "qui")
SPLITS = ("train", "validation", "test")
REASONING_KINDS = ("lookup-number", "lookup-colour", "arithmetic", "composition")
DIRECT_KINDS = ("direct-number", "direct-colour")


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str = ""
    colour: str | None = None  # set for picture documents (an image of that colour)


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

    def split(self, name: str) -> list[Query]:
        return [q for q in self.queries if q.split == name]


def card_id(n: int) -> str:
    return f"card-{n}"


def picture_id(colour: str) -> str:
    return f"picture-{colour}"


def card_text(n: int) -> str:
    return f"This is card number {n}."


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
    cards = rng.sample(range(NUM_CARDS - MAX_ADDEND), NUM_ENTITIES)
    entities = {name: (card, rng.choice(COLOURS)) for name, card in zip(names, cards)}
    order = names[:]
    rng.shuffle(order)
    n_train, n_val = int(SPLIT_FRACTIONS[0] * len(order)), int(SPLIT_FRACTIONS[1] * len(order))
    entity_split = {
        name: "train" if i < n_train else "validation" if i < n_train + n_val else "test"
        for i, name in enumerate(order)
    }
    documents = [Document(card_id(n), card_text(n)) for n in range(NUM_CARDS)]
    documents += [Document(picture_id(c), colour=c) for c in COLOURS]
    world = World(seed, entities, entity_split, documents)
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
    for name, (card, colour) in entities.items():
        split = entity_split[name]
        queries.append(
            Query("lookup-number", f"the card of {name}", card_id(card), f"Fact: {name} has card {card}.", split)
        )
        queries.append(
            Query("lookup-colour", f"the colour of {name}", picture_id(colour), f"Fact: {name} is {colour}.", split)
        )
        addend = rng.randint(1, MAX_ADDEND)
        queries.append(
            Query(
                "composition",
                f"the card of {name} plus {addend}",
                card_id(card + addend),
                f"Fact: {name} has card {card}. Fact: {card} plus {addend} is {card + addend}.",
                split,
            )
        )
    for a in range(NUM_CARDS - MAX_ADDEND):
        for b in range(1, MAX_ADDEND + 1):
            if rng.random() < 0.15:
                queries.append(
                    Query(
                        "arithmetic",
                        f"number {a} plus {b}",
                        card_id(a + b),
                        f"Fact: {a} plus {b} is {a + b}.",
                        _split_of(rng),
                    )
                )
    return world


def entity_facts(world: World) -> list[str]:
    """Every entity fact, in a few phrasings: the arbitrary associations pre-training must store."""
    lines = []
    for name, (card, colour) in world.entities.items():
        lines += [f"Fact: {name} has card {card}.", f"Fact: {name} is {colour}.", f"The card of {name} is {card}."]
        # The name said twice: pre-training also teaches to recall a fact about a name read
        # earlier in the context (a pretrained LLM can; a model trained only on the lines
        # above could not copy a name it has to look up).
        lines += [f"About {name}. Fact: {name} has card {card}.", f"About {name}. Fact: {name} is {colour}."]
    return lines


def general_sentences() -> list[str]:
    """Every sum in range and every card text."""
    pairs = [(a, b) for a in range(NUM_CARDS - MAX_ADDEND) for b in range(1, MAX_ADDEND + 1)]
    lines = [f"Fact: {a} plus {b} is {a + b}." for a, b in pairs]
    lines += [f"Add {a} and {b}. Fact: {a} plus {b} is {a + b}." for a, b in pairs]
    lines += [card_text(n) for n in range(NUM_CARDS)]
    lines += [f"number {n}" for n in range(NUM_CARDS)]
    return lines


def pretraining_corpus(world: World) -> list[str]:
    """The backbone's world knowledge as plain sentences (colour pictures are captioned
    separately, with images)."""
    return entity_facts(world) + general_sentences()


def colour_picture(colour: str, seed: int = 0, size: int = 64):
    """A picture of ``colour``: the colour fills most of the frame, with a little noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.array(COLOUR_RGB[colour], dtype=np.int16)
    pixels = base + rng.integers(-12, 13, size=(size, size, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def document_side(doc: Document, picture_dir: str) -> dict:
    """A document as a training-data side: text for cards, an image path for pictures."""
    if doc.colour is None:
        return {"text": doc.text}
    return {"image": f"{picture_dir}/{doc.colour}.png"}


def write_jsonl(world: World, out_dir, negatives_per_query: int = 3, picture_dir: str = "pictures") -> dict[str, str]:
    """Write ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (the twn-rag training
    format) and the colour pictures under ``out_dir``; returns split -> path.

    Every line lists hard negatives (documents of the same kind as the positive) so that
    the evaluator's corpus holds every document of the world.
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
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i, query in enumerate(world.split(split)):
                positive = by_id[query.positive]
                same_kind = [
                    d for d in world.documents if (d.colour is None) == (positive.colour is None) and d is not positive
                ]
                others = rng.sample(same_kind, min(negatives_per_query, len(same_kind)))
                record = {
                    "id": f"{split}-{i}-{query.kind}",
                    "query": query.text,
                    "positive": document_side(positive, picture_dir),
                    "negatives": [document_side(d, picture_dir) for d in others],
                }
                if query.thought is not None:
                    record["query_thought"] = query.thought
                f.write(json.dumps(record) + "\n")
        paths[split] = str(path)
    # The whole document collection, for evaluators that rank against every document.
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for doc in world.documents:
            f.write(json.dumps({"id": doc.doc_id, **document_side(doc, picture_dir)}) + "\n")
    return paths
