"""The typer application behind ``twn-rag``; command modules add their commands to ``app``."""

from __future__ import annotations

import logging

import typer

import twn_rag

app = typer.Typer(
    name="twn-rag",
    help="Think-When-Needed multimodal embeddings: index, search, train and evaluate.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def version() -> None:
    """Print the twn-rag version."""
    typer.echo(twn_rag.__version__)


def main() -> None:
    """Console-script entry point."""
    app()
