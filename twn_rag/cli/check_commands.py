"""``twn-rag check``: what is wrong with an index, and ``--repair`` for what can be repaired."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from twn_rag.cli.app import INDEX_DAMAGED, app
from twn_rag.cli.index_commands import COLLECTION_HELP, INDEX_HELP, JSON_HELP, URL_HELP, _echo_json, _reported_errors
from twn_rag.index import DEFAULT_COLLECTION
from twn_rag.index.check import check_index_dir
from twn_rag.index.report import printable


@app.command("check")
def check_command(
    index: Annotated[Path, typer.Option("--index", help=INDEX_HELP)],
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = DEFAULT_COLLECTION,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help=URL_HELP)] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Repair what can be repaired (no other process may write meanwhile).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=f"{JSON_HELP}: one document.")] = False,
) -> None:
    """Check an index: records against their page/frame images (missing, orphaned), duplicate
    items, files marked complete that miss items, records vector search cannot reach (a lost
    HNSW index), the reasoning ledger against the records, SQLite integrity.

    --repair removes orphaned images and duplicates, recounts the ledger, moves a database that
    cannot be opened aside, and re-queues the files whose images or items are missing or
    unreachable: index them again (the command is printed) to restore them. Without --repair
    nothing is written, and a read-only index can be checked. Exit codes: 0 healthy (or every
    problem repaired), 3 no index there (or --repair on a read-only one), 4 problems found and
    not all repaired.
    """
    with _reported_errors(index):
        report = check_index_dir(index, collection=collection, chroma_url=chroma_url, repair=repair)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.summary_lines():
            typer.echo(line)
        if report.requeued:
            again = " ".join(shlex.quote(printable(source)) for source in report.requeued)
            typer.echo(f"to finish the repair, index these files again: twn-rag index --index {index} {again}")
    if not report.ok:
        raise typer.Exit(INDEX_DAMAGED)
