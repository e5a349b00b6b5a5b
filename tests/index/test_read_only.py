"""``twn_rag/index/read_only.py``: a read-only index answers searches, info and check, and
refuses every write, naming the index; one that cannot be written (a read-only mount) is read
from a temporary copy, since chromadb 1.5.9 cannot open a database it may not write."""

import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest
from support.index_damage import database, read_only, release_chroma

from twn_rag import ReasoningBudget
from twn_rag.index import IndexReadOnlyError, TWNIndex


def test_a_read_only_index_searches_and_refuses_every_write(index_copy, built_index_dir, embedder, caplog):
    index = TWNIndex.open(index_copy, embedder, read_only=True)
    assert index.read_only
    spent = index.budget("query").ledger
    with caplog.at_level(logging.WARNING):
        hits = index.search("Configure the budget.", k=3)
    assert len(hits) == 3 and index.last_query is not None
    assert index.budget("query").ledger == spent  # the query's spend is not written...
    assert "is read-only: the query budget's spend of this call is not recorded" in caplog.text  # ...and it says so
    assert index.check().healthy and index.info().items == 8

    images = sorted(p.name for p in index.images_dir.iterdir())
    writes = {
        "add": lambda: index.add([built_index_dir.parent / "docs"]),
        "delete_source": lambda: index.delete_source(built_index_dir.parent / "docs" / "manual.pdf"),
        "set_budget": lambda: index.set_budget("document", ReasoningBudget(mode="never")),
        "check --repair": lambda: index.check(repair=True),
    }
    for write in writes.values():
        with pytest.raises(IndexReadOnlyError, match=f"index {index_copy} is read-only .*opened read-only"):
            write()
    assert index.count() == 8 and sorted(p.name for p in index.images_dir.iterdir()) == images
    with pytest.raises(IndexReadOnlyError):  # budgets given when opening are a write too
        TWNIndex.open(index_copy, embedder, read_only=True, document_budget=ReasoningBudget(mode="never"))


def test_a_read_only_index_is_never_created(tmp_path, embedder):
    with pytest.raises(Exception, match="no twn-rag index"):
        TWNIndex.open(tmp_path / "new", embedder, read_only=True)
    assert not (tmp_path / "new").exists()


# Runs each command line in one process (one import of torch and chromadb), in-process with
# typer's runner, and prints their exit codes and output as JSON, then what chromadb itself says
# when it opens the database at argv[2] (why twn-rag reads a copy).
_RUN_COMMANDS = """
import json, sys
import chromadb
from typer.testing import CliRunner
from twn_rag.cli import app
results = [[r.exit_code, r.stdout, r.stderr] for r in (CliRunner().invoke(app, a) for a in json.loads(sys.argv[1]))]
try:
    chromadb.PersistentClient(path=sys.argv[2])
    results.append("opened")
except Exception as exc:
    results.append(str(exc))
print(json.dumps(results))
"""


def _run_commands(prefix, commands, chroma_dir, tmp):
    """The commands' results, and what chromadb said opening ``chroma_dir``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _RUN_COMMANDS, json.dumps(commands), str(chroma_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    *results, chromadb_said = json.loads(done.stdout)
    return [
        subprocess.CompletedProcess(args, code, out, err) for args, (code, out, err) in zip(commands, results)
    ], chromadb_said


def test_an_unwritable_index_is_searched_inspected_and_checked_from_a_copy(index_copy, built_index_dir, tmp_path):
    """As the index's user meets it on a read-only mount (root: a read-only bind mount in a
    private mount namespace; another user: no write permission)."""
    release_chroma(index_copy)
    digest = hashlib.sha256(database(index_copy).read_bytes()).hexdigest()
    temp = tmp_path / "temp"
    temp.mkdir()
    docs = built_index_dir.parent / "docs"
    index = ["--index", str(index_copy)]
    commands = [
        ["search", "Configure the budget.", "-k", "3", *index],
        ["info", *index, "--json"],
        ["check", *index],
        ["index", str(docs), *index],
        ["delete", str(docs / "manual.pdf"), *index],
        ["check", "--repair", *index],
    ]
    with read_only(index_copy) as prefix:
        if prefix is None:
            pytest.skip("this process can neither drop write permission (root) nor mount read-only")
        (search, info, check, *refused), chromadb_said = _run_commands(prefix, commands, index_copy / "chroma", temp)
    assert "attempt to write a readonly database" in chromadb_said  # chromadb alone cannot open it
    assert search.returncode == 0, search.stderr
    assert len(search.stdout.splitlines()) == 3 and "spend of this call is not recorded" in search.stderr
    assert info.returncode == 0 and json.loads(info.stdout)["items"] == 8 and json.loads(info.stdout)["reachable"] == 8
    assert check.returncode == 0 and check.stdout.splitlines()[-1] == "healthy"
    for result in refused:
        assert result.returncode == 3, (result.args, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: index {index_copy} is read-only (") and "cannot be written" in line
    assert hashlib.sha256(database(index_copy).read_bytes()).hexdigest() == digest
    assert list(temp.iterdir()) == []  # each command removed its copy
