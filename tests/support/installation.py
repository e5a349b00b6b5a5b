"""What ``pip install "twn-rag[all]"`` installs, read from the installed packages' metadata, and
the import names a fresh virtual environment with only that would not have."""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# A fresh virtual environment comes with these before anything is installed into it.
FRESH_VENV_DISTRIBUTIONS = frozenset({"pip", "setuptools", "wheel"})


def _applicable(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def distributions_installed_by(distribution: str, extras: Iterable[str] = ()) -> set[str]:
    """Canonical names of ``distribution`` and of everything it requires with ``extras``,
    transitively, as the installed packages' metadata declare them."""
    installed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(distribution), frozenset(extras))]
    while pending:
        name, wanted = pending.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        installed.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # required on another platform or Python only
            continue
        for text in requirements:
            requirement = Requirement(text)
            if _applicable(requirement, wanted):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return installed


def all_extra_distributions() -> set[str]:
    """What a fresh virtual environment holds after ``pip install "twn-rag[all]"``."""
    return distributions_installed_by("twn-rag", ["all"]) | FRESH_VENV_DISTRIBUTIONS


def import_names_outside(distributions: set[str]) -> set[str]:
    """Top-level import names that no distribution of ``distributions`` provides, among those
    of the installed distributions (``llama_index`` is outside ``[all]``; ``google`` is not,
    because protobuf, which Chroma needs, provides it too)."""
    return {
        name
        for name, providers in metadata.packages_distributions().items()
        if not {canonicalize_name(provider) for provider in providers} & distributions
    }
