"""The typer application behind ``twn-rag``; command modules add their commands to ``app``."""

from __future__ import annotations

import logging
import warnings

import typer
from PIL import Image

import twn_rag

# Exit codes of the index commands (index, search, info, delete).
FILES_FAILED = 1  # some input files failed (each named with its reason); the others were processed
USAGE_ERROR = 2  # bad arguments, or an index/model that cannot be used as asked
INTERNAL_ERROR = 70  # a bug (EX_SOFTWARE in sysexits.h): the traceback is printed, and what was done before it

app = typer.Typer(
    name="twn-rag",
    help=(
        "Think-When-Needed multimodal embeddings: index, search, train and evaluate.\n\n"
        f"Exit codes of index, search, info and delete: 0 success; {FILES_FAILED} some files failed "
        f"(each is named, the others were indexed); {USAGE_ERROR} usage or index error; {INTERNAL_ERROR} "
        "internal error, no input file's fault (the traceback is printed, and what was done before it)."
    ),
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
