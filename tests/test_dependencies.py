"""The product code needs only what ``pip install "twn-rag[all]"`` installs: no module of
``twn_rag`` imports a package that only the dev extra (or nothing of ours) brings, unless it
handles that package's absence (an optional feature that says what to install)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from support.installation import all_extra_distributions, import_names_outside

import twn_rag

PACKAGE_DIR = Path(twn_rag.__file__).resolve().parent
# Test support that needs the dev extra by nature: the pytest plugin is loaded by pytest only.
DEV_ONLY_MODULES = {PACKAGE_DIR / "testing" / "pytest_plugin.py"}
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _handles_import_errors(node: ast.Try) -> bool:
    for handler in node.handlers:
        caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(name, ast.Name) and name.id in IMPORT_ERRORS for name in caught):
            return True
    return False


def unguarded_imports(node: ast.AST, guarded: bool = False) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import under ``node`` that is not inside
    a ``try`` whose handlers catch ``ImportError``; at any depth (imports inside functions too)."""
    if isinstance(node, ast.Import) and not guarded:
        yield from ((node.lineno, alias.name.partition(".")[0]) for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and not guarded and node.level == 0 and node.module:
        yield node.lineno, node.module.partition(".")[0]
    for child in ast.iter_child_nodes(node):
        inside_guard = guarded or (isinstance(node, ast.Try) and child in node.body and _handles_import_errors(node))
        yield from unguarded_imports(child, inside_guard)


def test_unguarded_imports_finds_imports_at_any_depth_outside_import_error_handlers():
    tree = ast.parse(
        "import a.b\nfrom c import d\nfrom . import e\n"
        "def f():\n    import g\n    try:\n        import h\n    except ImportError:\n        import i\n"
        "try:\n    import j\nexcept (ValueError, ModuleNotFoundError):\n    pass\n"
        "try:\n    import k\nexcept ValueError:\n    pass\n"
    )
    assert [name for _, name in unguarded_imports(tree)] == ["a", "c", "g", "i", "k"]


def test_twn_rag_imports_only_what_the_all_extra_installs():
    not_installed = import_names_outside(all_extra_distributions())
    assert {"pytest", "llama_index", "langchain_core", "matplotlib"} <= not_installed  # the check can fail
    offenders = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {name}"
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if path not in DEV_ONLY_MODULES
        for line, name in unguarded_imports(ast.parse(path.read_text(encoding="utf-8")))
        if name in not_installed
    ]
    assert not offenders, 'needs more than pip install "twn-rag[all]":\n' + "\n".join(offenders)
