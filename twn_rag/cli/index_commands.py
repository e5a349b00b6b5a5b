"""``twn-rag index``, ``search``, ``info`` and ``delete``: PDFs, videos and images into a Chroma
index with a reasoning budget, and searches over it."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from twn_rag.cli.app import app
from twn_rag.config import DEFAULT_MODEL
from twn_rag.embedder import DEFAULT_BATCH_SIZE
from twn_rag.index import DEFAULT_COLLECTION, IndexReport, IndexStoreError, SearchHit, TWNIndex
from twn_rag.modeling import CheckpointError, UnsupportedArchitectureError

USAGE_ERROR = 2

INDEX_HELP = "Index directory: the embedded Chroma database and the rendered page/frame images."
COLLECTION_HELP = "Chroma collection name (3-512 characters of a-z, 0-9, '.', '_', '-')."
URL_HELP = "Use the Chroma server at this URL (http://host:port) instead of the embedded database."
MODEL_HELP = f"TWN checkpoint directory or hub id. Default: the index's model; {DEFAULT_MODEL} for a new index."


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn the errors a user can fix (wrong index, model, URL, budget) into one line and
    exit code 2, instead of a traceback."""
    try:
        yield
    except (IndexStoreError, CheckpointError, UnsupportedArchitectureError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USAGE_ERROR) from exc


def print_index_report(report: IndexReport) -> None:
    """The summary of an indexing run on stdout, each failed file on stderr."""
    for line in report.summary_lines():
        typer.echo(line)
    for line in report.failure_lines():
        typer.echo(line, err=True)


@app.command("index")
def index_command(
    paths: Annotated[list[Path], typer.Argument(help="PDFs, videos, images, or folders (walked recursively).")],
    index: Annotated[Path, typer.Option("--index", help=INDEX_HELP)],
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = DEFAULT_COLLECTION,
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    think_ratio: Annotated[
        float | None,
        typer.Option(
            "--think-ratio", min=0.0, max=1.0, help="At most this share of documents may think (over the index)."
        ),
    ] = None,
    max_thought_tokens: Annotated[
        int | None, typer.Option("--max-thought-tokens", min=1, help="Cap on the length of one thought, in tokens.")
    ] = None,
    token_budget: Annotated[
        int | None, typer.Option("--token-budget", min=0, help="Total thought tokens the index may spend on documents.")
    ] = None,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help=URL_HELP)] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Inputs per forward pass.")
    ] = DEFAULT_BATCH_SIZE,
) -> None:
    """Index PDFs (pages: text + image), videos (sampled frames) and images into Chroma.

    Unchanged files are skipped, interrupted runs resume, changed files replace their old
    items. Budget options change the index's document budget; what was spent is kept. Exits
    with 1 when any file failed (the others are indexed).
    """
    with _reported_errors():
        twn_index = TWNIndex.open(
            index, model, collection=collection, chroma_url=chroma_url, default_model=DEFAULT_MODEL
        )
        limits = {
            "max_think_ratio": think_ratio,
            "max_thought_tokens": max_thought_tokens,
            "token_budget": token_budget,
        }
        limits = {name: value for name, value in limits.items() if value is not None}
        if limits:
            twn_index.set_budget("document", dataclasses.replace(twn_index.budget("document"), **limits))
        report = twn_index.add(paths, show_progress=sys.stderr.isatty(), batch_size=batch_size)
    print_index_report(report)
    if not report.ok:
        raise typer.Exit(1)


def format_hit(hit: SearchHit) -> str:
    """One tab-separated line: score, source, page or time, modality, image, thought."""
    thought = json.dumps(hit.thought, ensure_ascii=False) if hit.thought is not None else "-"
    return "\t".join(
        (
            f"{hit.score:.4f}",
            hit.source,
            hit.location or "-",
            hit.modality,
            f"image={hit.image_path or '-'}",
            f"thought={thought}",
        )
    )


@app.command("search")
def search_command(
    index: Annotated[Path, typer.Option("--index", help=INDEX_HELP)],
    query: Annotated[str | None, typer.Argument(help="Text to search for.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Search with this image (alone or with the text).")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Number of hits.")] = 5,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = DEFAULT_COLLECTION,
    model: Annotated[
        str | None, typer.Option("--model", help="Override the index's model path (same model only).")
    ] = None,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help=URL_HELP)] = None,
) -> None:
    """Search the index by text and/or image; prints one hit per line, best first:
    score, source, page=N or t=S, modality, image=PATH, thought=JSON."""
    if query is None and image is None:
        typer.echo("error: give a QUERY, an --image, or both", err=True)
        raise typer.Exit(USAGE_ERROR)
    with _reported_errors():
        twn_index = TWNIndex.open(index, model, collection=collection, chroma_url=chroma_url)
        hits = twn_index.search(query, image=str(image) if image is not None else None, k=k)
    asked = twn_index.last_query
    if asked is not None:  # on stderr, so stdout stays one hit per line
        thought = "did not think" if asked.thought is None else f"thought {asked.thought!r}"
        typer.echo(f"query: gate {asked.gate_score:.2f}, {thought}", err=True)
    for hit in hits:
        typer.echo(format_hit(hit))


@app.command("info")
def info_command(
    index: Annotated[Path, typer.Option("--index", help=INDEX_HELP)],
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = DEFAULT_COLLECTION,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help=URL_HELP)] = None,
) -> None:
    """What the index holds (items by modality) and its budgets (spent vs allowed)."""
    with _reported_errors():
        info = TWNIndex.open(index, collection=collection, chroma_url=chroma_url).info()
    modalities = ", ".join(f"{name}: {count}" for name, count in info.modalities.items()) or "none"
    typer.echo(f"index: {info.location} (collection {info.collection!r})")
    typer.echo(f"model: {info.model_id} (dimension {info.dimension})")
    typer.echo(f"items: {info.items} from {info.sources} sources ({modalities})")
    for role in ("document", "query"):
        typer.echo(f"{role} budget: {info.budgets[role].describe()}")


@app.command("delete")
def delete_command(
    sources: Annotated[list[Path], typer.Argument(help="Source files whose items to remove.")],
    index: Annotated[Path, typer.Option("--index", help=INDEX_HELP)],
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = DEFAULT_COLLECTION,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help=URL_HELP)] = None,
) -> None:
    """Remove the items of the given source files from the index."""
    with _reported_errors():
        twn_index = TWNIndex.open(index, collection=collection, chroma_url=chroma_url)
        for source in sources:
            typer.echo(f"{source}: {twn_index.delete_source(source)} items removed")
