"""``python -m twn_rag.cli``: the same as the ``twn-rag`` command."""

from twn_rag.cli import main

main()
