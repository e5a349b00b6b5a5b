"""The index commands on bad index directories (``twn_rag/cli``): a missing, wrong-kind or
damaged index is one line on stderr and its own exit code, never a traceback; ``check`` finds
what a damaged index lost and ``check --repair`` with the next ``index`` restores it."""

import json

import pytest
from support.index_damage import (
    copy_index,
    create_small_hnsw_collection,
    database,
    delete_images,
    delete_vector_segments,
    empty_database,
    overwrite_header,
    release_chroma,
    truncate_database,
    write_documents,
)
from typer.testing import CliRunner

from twn_rag.cli import app

INDEX_UNUSABLE, INDEX_DAMAGED = 3, 4


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def docs(tmp_path_factory, sample_video):
    return write_documents(tmp_path_factory.mktemp("docs"), sample_video)


@pytest.fixture(scope="module")
def built(tmp_path_factory, docs, tiny_ckpt):
    index_dir = tmp_path_factory.mktemp("built") / "index"
    result = _run("index", docs, "--index", index_dir, "--model", tiny_ckpt, "--max-thought-tokens", "4")
    assert result.exit_code == 0, result.output
    release_chroma(index_dir)
    return index_dir


@pytest.fixture
def index_dir(built, tmp_path):
    yield copy_index(built, tmp_path / "index")
    release_chroma(tmp_path / "index")


def _every_command(index_dir, docs):
    """Each index command on ``index_dir``, as argument lists."""
    target = ("--index", index_dir)
    return {
        "index": ("index", docs, *target),
        "search": ("search", "budget", *target),
        "info": ("info", *target),
        "delete": ("delete", docs / "manual.pdf", *target),
        "check": ("check", *target),
    }


def _one_error_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_help_states_every_exit_code():
    help_text = " ".join(_run("--help").stdout.split())
    for said in ("0 success", "1 some files failed", "2 usage error", "3 the index is missing or unusable"):
        assert said in help_text
    assert "4 the index is damaged (run twn-rag check --repair)" in help_text and "70 internal error" in help_text


def test_an_index_path_that_is_a_file(tmp_path, docs):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for name, command in _every_command(path, docs).items():
        result = _run(*command)
        assert result.exit_code == INDEX_UNUSABLE, (name, result.output)
        assert "notes.txt is a file, not an index directory" in _one_error_line(result)
    assert path.read_text() == "mine"


def test_a_chroma_entry_that_is_a_file(tmp_path, docs):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "chroma").write_text("mine")
    for name, command in _every_command(tmp_path / "index", docs).items():
        result = _run(*command)
        assert result.exit_code == INDEX_UNUSABLE, (name, result.output)
        assert "chroma is a file, not a Chroma database folder" in _one_error_line(result)


def test_a_missing_index(tmp_path, docs):
    commands = _every_command(tmp_path / "none", docs)
    del commands["index"]  # which creates it
    for name, command in commands.items():
        result = _run(*command)
        assert result.exit_code == INDEX_UNUSABLE, (name, result.output)
        assert "no twn-rag index at" in _one_error_line(result)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("name", ["a..b", "127.0.0.1", "ab"])
def test_a_collection_name_chroma_refuses_is_a_usage_error(built, docs, name):
    for command in _every_command(built, docs).values():
        result = _run(*command, "--collection", name)
        assert result.exit_code == 2, result.output
        assert f"collection name {name!r} is not valid for Chroma: it" in _one_error_line(result)


@pytest.mark.parametrize(
    "damage, said",
    [
        (truncate_database, "is truncated"),
        (overwrite_header, "is not an SQLite database"),
        (empty_database, "is empty (0 bytes)"),
    ],
    ids=["truncated", "header overwritten", "0 bytes"],
)
def test_a_damaged_database_stops_every_command_and_nothing_starts_over(index_dir, docs, tiny_ckpt, damage, said):
    images = sorted(p.name for p in (index_dir / "images").iterdir())
    damage(index_dir)
    before = database(index_dir).read_bytes()
    for name, command in _every_command(index_dir, docs).items():
        result = _run(*command)
        if name == "check":  # check reports the damage as its finding, on stdout
            assert (
                result.exit_code == INDEX_DAMAGED and f"PROBLEM database: index {index_dir} is damaged" in result.stdout
            )
            continue
        assert result.exit_code == INDEX_DAMAGED, (name, result.output)
        line = _one_error_line(result)
        assert f"index {index_dir} is damaged: its database" in line and said in line
        assert f"run `twn-rag check --index {index_dir}`" in line
    assert database(index_dir).read_bytes() == before  # `index` did not start a new index over it
    assert sorted(p.name for p in (index_dir / "images").iterdir()) == images

    repaired = _run("check", "--index", index_dir, "--repair")
    assert repaired.exit_code == 0 and "moved the damaged database to" in repaired.stdout
    rebuilt = _run("index", docs, "--index", index_dir, "--model", tiny_ckpt)  # the model id went with the database
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "(8 items added" in rebuilt.stdout
    assert _run("check", "--index", index_dir).stdout.splitlines()[-1] == "healthy"


def test_deleted_images_are_flagged_by_search_and_restored_by_repair_and_index(index_dir, docs):
    delete_images(index_dir)
    search = _run("search", "Configure the budget.", "--index", index_dir, "-k", "8")
    assert search.exit_code == 0
    flagged = [line for line in search.stdout.splitlines() if "\timage=(missing) " in line]
    assert len(flagged) == 7  # every page and frame; the image file is its own source
    assert "warning: 7 of the 8 hits name an image file that does not exist" in search.stderr
    as_json = _run("search", "Configure the budget.", "--index", index_dir, "-k", "8", "--json")
    assert sum(json.loads(line)["image_missing"] for line in as_json.stdout.splitlines()) == 7

    check = _run("check", "--index", index_dir, "--json")
    assert check.exit_code == INDEX_DAMAGED
    report = json.loads(check.stdout)
    assert not report["ok"] and [p["kind"] for p in report["problems"]] == ["missing_image", "missing_image"]
    repair = _run("check", "--index", index_dir, "--repair")
    assert repair.exit_code == 0, repair.output
    assert repair.stdout.splitlines()[-1].startswith(
        f"to finish the repair, index these files again: twn-rag index --index {index_dir} "
    )
    assert _run("index", docs, "--index", index_dir).exit_code == 0
    search = _run("search", "Configure the budget.", "--index", index_dir, "-k", "8")
    assert "(missing)" not in search.stdout and "warning" not in search.stderr
    assert _run("check", "--index", index_dir).exit_code == 0


def test_a_deleted_hnsw_folder_is_detected_by_info_search_and_index_and_repaired(tmp_path, docs, tiny_ckpt):
    index_dir = tmp_path / "index"
    create_small_hnsw_collection(index_dir)
    assert _run("index", docs, "--index", index_dir, "--model", tiny_ckpt).exit_code == 0
    delete_vector_segments(index_dir)

    info = _run("info", "--index", index_dir)
    assert info.exit_code == 0 and "items: 8 from 3 sources" in info.stdout
    [warning] = info.stderr.splitlines()
    reachable = int(warning.split("vector search reaches only ")[1].split()[0])
    assert reachable < 8 and f"reaches only {reachable} of the 8 records" in warning
    assert f"run `twn-rag check --index {index_dir} --repair`" in warning
    search = _run("search", "budget", "--index", index_dir, "-k", "8")
    assert len(search.stdout.splitlines()) == reachable and warning in search.stderr
    again = _run("index", docs, "--index", index_dir)
    assert "3 unchanged" in again.stdout and warning in again.stderr

    check = _run("check", "--index", index_dir)
    assert check.exit_code == INDEX_DAMAGED and f"vector search reaches {reachable} of 8" in check.stdout
    assert _run("check", "--index", index_dir, "--repair").exit_code == 0
    assert _run("index", docs, "--index", index_dir).exit_code == 0
    search = _run("search", "budget", "--index", index_dir, "-k", "8")
    assert len(search.stdout.splitlines()) == 8 and "warning" not in search.stderr
    assert _run("check", "--index", index_dir).stdout.splitlines()[-1] == "healthy"
    release_chroma(index_dir)
