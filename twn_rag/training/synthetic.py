"""A small synthetic retrieval data set in the training JSONL format, for tests and for
trying the training commands offline with the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

# (query, positive, hard negative, reference thought for the query)
TOY_PAIRS = [
    ("seven plus five", "Seven plus five equals twelve.", "Seven minus five equals two.", "add seven and five"),
    ("capital of France", "Paris is the capital of France.", "Berlin is a large city.", "a city in France"),
    ("invoice total", "The total is the sum of the line items plus tax.", "The invoice date.", "sum of the items"),
    ("red square", "A red square on a white page.", "A blue circle on a white page.", "a red shape"),
    ("moving ball", "The video shows a ball moving to the right.", "A still photo of a ball.", "motion of a ball"),
    ("installation steps", "Page one describes the installation.", "Page two: configuration.", "how to install"),
    ("twelve minus three", "Twelve minus three equals nine.", "Twelve plus three is fifteen.", "subtract three"),
    ("what is a query", "A query asks for documents.", "A frame is an image.", "queries and documents"),
]


def write_toy_dataset(
    directory: str | Path,
    num_examples: int = len(TOY_PAIRS),
    *,
    with_images: bool = True,
    with_thoughts: bool = True,
    filename: str = "train.jsonl",
) -> Path:
    """Write ``directory/filename`` with ``num_examples`` (<= 8) query/positive/negative lines.

    With ``with_images`` every other positive also carries a small PNG (written into
    ``directory/images``, referenced by a relative path); with ``with_thoughts`` every query
    and every other positive has a reference thought. Returns the JSONL path.
    """
    from twn_rag.samples import make_sample_image

    if not 1 <= num_examples <= len(TOY_PAIRS):
        raise ValueError(f"num_examples must be within 1..{len(TOY_PAIRS)}, got {num_examples}")
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (query, positive, negative, thought) in enumerate(TOY_PAIRS[:num_examples]):
        record: dict = {"id": f"toy-{i}", "query": query, "positive": {"text": positive}, "negatives": [negative]}
        if with_images and i % 2 == 0:
            image = directory / "images" / f"positive-{i}.png"
            make_sample_image((64, 48), seed=i).save(image)
            record["positive"]["image"] = f"images/{image.name}"
        if with_thoughts:
            record["query_thought"] = thought
            if i % 2 == 1:
                record["positive_thought"] = f"about {thought}"
        lines.append(json.dumps(record))
    path = directory / filename
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
