"""``twn-rag index``, ``search``, ``info`` and ``delete``: PDFs, videos and images into a Chroma
index with a reasoning budget, and searches over it; how their errors become exit codes."""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from twn_rag.cli.app import FILES_FAILED, INDEX_DAMAGED, INDEX_UNUSABLE, INTERNAL_ERROR, USAGE_ERROR, app
from twn_rag.config import DEFAULT_MODEL
from twn_rag.embedder import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, FROM_CONFIG
from twn_rag.index import (
    DEFAULT_COLLECTION,
    IndexDamagedError,
    IndexingAborted,
    IndexReport,
    IndexStoreError,
    IndexUnusableError,
    SearchHit,
    TWNIndex,
)
from twn_rag.index.directory import chroma_failure
from twn_rag.index.report import printable
from twn_rag.modeling import CheckpointError, UnsupportedArchitectureError

JSON_HELP = "Print JSON for machines instead of text"

INDEX_HELP = "Index directory: the embedded Chroma database and the rendered page/frame images."
COLLECTION_HELP = "Chroma collection name (3-512 characters of a-z, 0-9, '.', '_', '-')."
URL_HELP = "Use the Chroma server at this URL (http://host:port) instead of the embedded database."
RAY_HELP = (
    "Run the embedding passes on Ray (pip install 'twn-rag[ray]'): a local cluster, or the one at "
    "--ray-address. A multi-machine cluster needs --chroma-url and an --index directory every node can reach."
)
MODEL_HELP = f"TWN checkpoint directory or hub id. Default: the index's model; {DEFAULT_MODEL} for a new index."


# The errors a user can fix (wrong index, model, URL, budget): one line and exit code 2.
USER_ERRORS = (IndexStoreError, CheckpointError, UnsupportedArchitectureError, FileNotFoundError, ValueError)


@contextmanager
def _reported_errors(index_dir: Path | None = None) -> Iterator[None]:
    """Turn any error into one line and an exit code instead of a bare traceback (``_exit_with``);
    a chromadb error about the index in ``index_dir`` (damaged, read-only) is said as such."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        _exit_with(exc, index_dir=index_dir)


def _user_exit_code(exc: BaseException, user_errors: tuple) -> int | None:
    """The exit code of an error the user can act on, or ``None`` for an internal error."""
    if isinstance(exc, IndexDamagedError):
        return INDEX_DAMAGED
    if isinstance(exc, IndexUnusableError):
        return INDEX_UNUSABLE
    return USAGE_ERROR if isinstance(exc, user_errors) else None


def _exit_with(
    exc: BaseException, message: str | None = None, user_errors: tuple = USER_ERRORS, index_dir: Path | None = None
) -> NoReturn:
    """Exit for ``exc``: a damaged index (4), an unusable one (3) or one of ``user_errors`` (2) as
    one line; any other is internal: its traceback, one line, exit code 70. ``message`` replaces
    the error's own text; a chromadb error about ``index_dir`` counts as the index error it means."""
    cause = (chroma_failure(exc, index_dir) if index_dir is not None else None) or exc
    code = _user_exit_code(cause, user_errors)
    if code is not None:
        typer.echo(f"error: {printable(message or str(cause))}", err=True)
        raise typer.Exit(code) from exc
    typer.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    message = printable(message or f"{type(exc).__name__}: {exc}")
    typer.echo(f"error: internal error: {message} (no input file's fault; the traceback above says where)", err=True)
    raise typer.Exit(INTERNAL_ERROR) from exc


def _echo_json(data: Any) -> None:
    """One JSON document on one line (ASCII, so any file name survives any terminal)."""
    typer.echo(json.dumps(data, sort_keys=True))


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
        int, typer.Option("--batch-size", min=1, help="At most this many inputs per forward pass.")
    ] = DEFAULT_BATCH_SIZE,
    max_input_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-input-tokens",
            min=1,
            help="Cut a page's text to this many tokens (images are not counted); the record says so. "
            "Default: the model's cap (2048 unless its twn_config.json says otherwise).",
        ),
    ] = None,
    max_batch_tokens: Annotated[
        int,
        typer.Option(
            "--max-batch-tokens",
            min=1,
            help="At most this many padded positions (rows x longest row, image tokens included) per forward pass.",
        ),
    ] = DEFAULT_MAX_BATCH_TOKENS,
    ray: Annotated[bool, typer.Option("--ray", help=RAY_HELP)] = False,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="With --ray: the cluster (auto, ray://head:10001...).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="With --ray: encoder actors (one model each).")] = 1,
    gpus_per_worker: Annotated[
        float, typer.Option("--gpus-per-worker", min=0.0, help="With --ray: GPUs per encoder actor (0: CPU).")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help=f"{JSON_HELP}: one document, the run's report.")] = False,
) -> None:
    """Index PDFs (pages: text + image), videos (sampled frames) and images into Chroma.

    Unchanged files are skipped, interrupted runs resume, changed files replace their old
    items. Budget options change the index's document budget; what was spent is kept. Every
    new item is embedded without thinking first, then the budget goes to the items of the
    whole index the gate is surest about, which think and are embedded again. Each
    file that cannot be read or embedded is reported with its reason and the others are
    indexed. A damaged index is refused, never started over. Exit codes: 0 all indexed, 1 some
    files failed, 2 usage error, 3 index unusable (a file, read-only...), 4 index damaged (run
    twn-rag check), 70 internal error (the summary of what was done before it is still printed).
    """
    executor = _ray_executor(ray_address) if ray else {}
    with _reported_errors(index):
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
        try:
            report = twn_index.add(
                paths,
                show_progress=sys.stderr.isatty(),
                batch_size=batch_size,
                max_input_tokens=FROM_CONFIG if max_input_tokens is None else max_input_tokens,
                max_batch_tokens=max_batch_tokens,
                **executor,
                **({"workers": workers, "gpus_per_worker": gpus_per_worker} if executor else {}),
            )
        except IndexingAborted as exc:  # not a file's fault: what was done, then the error
            _print_report(exc.report, as_json, error=str(exc))
            _exit_with(exc.__cause__ or exc, str(exc), user_errors=(IndexStoreError,), index_dir=index)
    _print_report(report, as_json)
    with _reported_errors(index):
        _warn_if_unreachable(twn_index, index)
    if not report.ok:
        raise typer.Exit(FILES_FAILED)


def _ray_executor(address: str | None) -> dict[str, Any]:
    """``TWNIndex.add``'s executor arguments for ``--ray``; exits with what to install when
    Ray is not installed."""
    from twn_rag.index.ray_passes import import_ray

    try:
        import_ray()
    except ImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USAGE_ERROR) from exc
    return {"executor": "ray", "ray_address": address}


def _print_report(report: IndexReport, as_json: bool, error: str | None = None) -> None:
    if as_json:
        _echo_json({**report.to_dict(), "error": error})
    else:
        print_index_report(report)


def _warn_if_unreachable(twn_index: TWNIndex, index_dir: Path) -> tuple[int, int]:
    """Say on stderr when vector search cannot reach every record (the HNSW index lost some);
    returns ``(reachable, records)``."""
    reachable, records = twn_index.vector_reach()
    if reachable < records:
        typer.echo(
            f"warning: vector search reaches only {reachable} of the {records} records of this index "
            f"(its vector index lost the others); run `twn-rag check --index {printable(str(index_dir))} --repair`, "
            "then index the files again",
            err=True,
        )
    return reachable, records


def format_hit(hit: SearchHit) -> str:
    """One tab-separated line: score, source, page or time, modality, image, thought; any
    control character in a field is escaped (``printable``), so a hit is always one line. An
    image file that does not exist is flagged: ``image=(missing) PATH``."""
    thought = json.dumps(hit.thought, ensure_ascii=False) if hit.thought is not None else "-"
    image = printable(hit.image_path or "-")
    return "\t".join(
        (
            f"{hit.score:.4f}",
            printable(hit.source),
            hit.location or "-",
            hit.modality,
            f"image=(missing) {image}" if hit.image_missing else f"image={image}",
            f"thought={printable(thought)}",
        )
    )


def hit_record(hit: SearchHit) -> dict[str, Any]:
    """A hit as plain data for ``search --json`` (``image_missing``: its image file does not exist)."""
    fields = ("id", "score", "source", "modality", "page", "timestamp", "image_path", "thought", "gate_score", "text")
    return {**{name: getattr(hit, name) for name in fields}, "image_missing": hit.image_missing}


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
    as_json: Annotated[bool, typer.Option("--json", help=f"{JSON_HELP}: one object per hit, one per line.")] = False,
) -> None:
    """Search the index by text and/or image; prints one hit per line, best first:
    score, source, page=N or t=S, modality, image=PATH, thought=JSON (tab-separated, control
    characters in names escaped). With --json, one JSON object per hit per line (JSON Lines).
    A read-only index is searched as it is (the query's spend is not recorded). Warns on stderr
    when vector search cannot reach every record, or a hit's image file is missing."""
    if query is None and image is None:
        typer.echo("error: give a QUERY, an --image, or both", err=True)
        raise typer.Exit(USAGE_ERROR)
    with _reported_errors(index):
        twn_index = TWNIndex.open(index, model, collection=collection, chroma_url=chroma_url, read_only=None)
        hits = twn_index.search(query, image=str(image) if image is not None else None, k=k)
        _warn_if_unreachable(twn_index, index)
    missing = sum(1 for hit in hits if hit.image_missing)
    if missing:
        typer.echo(
            f"warning: {missing} of the {len(hits)} hits name an image file that does not exist (image=(missing)); "
            f"`twn-rag check --index {printable(str(index))}` says why",
            err=True,
        )
    asked = twn_index.last_query
    if asked is not None:  # on stderr, so stdout stays one hit per line
        thought = "did not think" if asked.thought is None else f"thought {asked.thought!r}"
        typer.echo(f"query: gate {asked.gate_score:.2f}, {thought}", err=True)
    for hit in hits:
        if as_json:
            _echo_json(hit_record(hit))
        else:
            typer.echo(format_hit(hit))


@app.command("info")
def info_command(
    index: Annotated[Path, typer.Option("--index", help=INDEX_HELP)],
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = DEFAULT_COLLECTION,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help=URL_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=f"{JSON_HELP}: one document.")] = False,
) -> None:
    """What the index holds (items by modality) and its budgets (spent vs allowed). Works on a
    read-only index; warns on stderr when vector search cannot reach every record."""
    with _reported_errors(index):
        twn_index = TWNIndex.open(index, collection=collection, chroma_url=chroma_url, read_only=None)
        info = twn_index.info()
        reachable, _records = _warn_if_unreachable(twn_index, index)
    if as_json:
        _echo_json({**info.to_dict(), "reachable": reachable})
        return
    modalities = ", ".join(f"{name}: {count}" for name, count in info.modalities.items()) or "none"
    typer.echo(f"index: {printable(info.location)} (collection {info.collection!r})")
    typer.echo(f"model: {printable(info.model_id)} (dimension {info.dimension})")
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
    with _reported_errors(index):
        twn_index = TWNIndex.open(index, collection=collection, chroma_url=chroma_url)
        for source in sources:
            typer.echo(f"{printable(str(source))}: {twn_index.delete_source(source)} items removed")
