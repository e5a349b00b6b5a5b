"""The typer application behind ``twn-rag``; command modules add their commands to ``app``."""

from __future__ import annotations

import logging
import warnings

import typer
from PIL import Image

import twn_rag

# Exit codes of the index commands (index, search, info, delete, check). The index's own state has
# two codes: one the user fixes by pointing at the right place or giving access (3), one that needs
# `twn-rag check --repair` (4); a script can tell "wrong --index" from "damaged index" without
# parsing the message.
FILES_FAILED = 1  # some input files failed (each named with its reason); the others were processed
USAGE_ERROR = 2  # bad arguments, a collection name Chroma refuses, or a model/settings mismatch
INDEX_UNUSABLE = 3  # no index there, a file where a folder belongs, read-only but written to, server unreachable
INDEX_DAMAGED = 4  # the index's database is damaged, or `check` found problems (not all repaired)
INTERNAL_ERROR = 70  # a bug (EX_SOFTWARE in sysexits.h): the traceback is printed, and what was done before it

EXIT_CODES_HELP = (
    f"Exit codes of index, search, info, delete and check: 0 success; {FILES_FAILED} some files failed "
    f"(each is named, the others were indexed); {USAGE_ERROR} usage error; {INDEX_UNUSABLE} the index is "
    "missing or unusable (a file, read-only when writing, server unreachable); "
    f"{INDEX_DAMAGED} the index is damaged (run twn-rag check --repair), or check found problems it did "
    f"not repair; {INTERNAL_ERROR} internal error, no input file's fault (the traceback is printed, and "
    "what was done before it)."
)

app = typer.Typer(
    name="twn-rag",
    help=f"Think-When-Needed multimodal embeddings: index, search, train and evaluate.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # twn-rag refuses oversized images itself, naming the file (twn_rag.media.MAX_DECODED_PIXELS).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@app.command()
def version() -> None:
    """Print the twn-rag version."""
    typer.echo(twn_rag.__version__)


def main() -> None:
    """Console-script entry point."""
    app()
