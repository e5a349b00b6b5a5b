"""Test support that is not a fixture: importable from any test module (``tests/`` is on
``sys.path`` because ``tests/conftest.py`` is loaded in pytest's default ``prepend`` mode)."""
