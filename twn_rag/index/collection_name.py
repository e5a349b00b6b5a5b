"""Chroma's rules for collection names, checked before Chroma sees the name, so that a bad
``--collection`` is one line naming the rule it breaks instead of a traceback.

chromadb 1.5.9 validates names in its Rust core (the same code serves the embedded client and
``chroma run``); its messages, seen on this version, give the rules mirrored here:

- "Expected a name containing 3-512 characters from [a-zA-Z0-9._-], starting and ending with a
  character in [a-zA-Z0-9]";
- "Expected a name that does not contains two consecutive periods (..)";
- "Expected a name that is not a valid ip address" (an IPv4 address as Rust parses one: four
  decimal numbers 0-255 without leading zeros, what ``ipaddress.IPv4Address`` accepts too; an
  IPv6 address needs ``:``, which rule 2 refuses already).

(The Python ``check_index_name`` in ``chromadb/api/segment.py`` is the legacy validator of the
pure-Python backend, with a 63-character limit; the Rust bindings used by 1.5.9 do not call it.)
"""

from __future__ import annotations

import ipaddress
import re

MIN_LENGTH = 3
MAX_LENGTH = 512
_ALLOWED = re.compile(r"[a-zA-Z0-9._-]*")
_ALPHANUMERIC = re.compile(r"[a-zA-Z0-9]")


def _is_ipv4_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def collection_name_problem(name: str) -> str | None:
    """Which of Chroma's rules ``name`` breaks, as a phrase, or ``None`` when Chroma accepts it."""
    if not MIN_LENGTH <= len(name) <= MAX_LENGTH:
        return f"it has {len(name)} characters (Chroma needs {MIN_LENGTH}-{MAX_LENGTH})"
    if not _ALLOWED.fullmatch(name):
        return "it may contain only a-z, A-Z, 0-9, '.', '_' and '-'"
    if not (_ALPHANUMERIC.fullmatch(name[0]) and _ALPHANUMERIC.fullmatch(name[-1])):
        return "it must start and end with a letter or a digit"
    if ".." in name:
        return "it contains two consecutive periods (..)"
    if _is_ipv4_address(name):
        return "it is an IPv4 address"
    return None


def check_collection_name(name: str) -> None:
    """``ValueError`` naming ``name`` and the rule it breaks unless Chroma accepts it."""
    problem = collection_name_problem(name)
    if problem is not None:
        raise ValueError(f"collection name {name!r} is not valid for Chroma: {problem}")
