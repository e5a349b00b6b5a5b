"""The ``twn-rag`` command line (typer). Command groups live in sibling modules and register
themselves on ``app`` when imported below."""

from __future__ import annotations

from twn_rag.cli import (
    check_commands,  # noqa: F401  (registers check)
    index_commands,  # noqa: F401  (registers index/search/info/delete)
    train_commands,  # noqa: F401  (registers train / eval)
)
from twn_rag.cli.app import app, main

__all__ = ["app", "main"]
