"""``python -m twn_rag.demo`` runs with only what ``pip install "twn-rag[all]"`` installs: it
runs in a fresh interpreter where every other installed package (the dev extra, the framework
integrations) cannot be imported."""

import os
import re
import subprocess
import sys
from pathlib import Path

from support.installation import all_extra_distributions, import_names_outside

from twn_rag import demo

# Marking a module None in sys.modules makes importing it fail as if it were not installed.
RUN_WITHOUT = (
    "import runpy, sys\n"
    "sys.modules.update(dict.fromkeys(sys.argv[1:]))\n"
    "runpy.run_module('twn_rag.demo', run_name='__main__')"
)


def run_demo(output: Path) -> str:
    """Run the demo as ``make demo`` does, writing into ``output``; returns its stdout."""
    not_installed = sorted(import_names_outside(all_extra_distributions()))
    # One intra-op thread, as in the other tests: on a busy 2-core machine more slow the tiny model down.
    env = {**os.environ, "TWN_DEMO_OUTPUT": str(output), "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, *not_installed], env=env, capture_output=True, text=True, timeout=900
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def test_demo_indexes_searches_and_reports_the_budget(tmp_path):
    first = run_demo(tmp_path / "out")
    world = demo.mini_world()
    names, tickets = len(world.names("test")), len(world.ticket_numbers("test"))
    # 60 card pages, a page per held-out ticket, one frame per colour (8 s sampled at 1 frame/s)
    items = world.num_cards + tickets + len(world.colours)
    assert f"indexed 3 files ({items} items added, 0 old items removed), 0 unchanged, 0 skipped, 0 failed" in first
    # the documents that thought, each ticket page with its rank with and without its thought
    [count] = re.findall(r"^(\d+) documents thought", first, re.M)
    thought = re.findall(r"^  (\S+) (?:page \d+  '(.*)'|t=\d+s  .*)  gate \d\.\d\d, thought '(.*)'$", first, re.M)
    assert len(thought) == int(count) and f"document budget: thought {count}/{items} items" in first
    ranked = re.findall(
        r"^      'the ticket for hall (\d+)' ranks it (\d+) with its thought, (\d+) without$", first, re.M
    )
    assert len(ranked) == sum(source == "tickets.pdf" for source, _, _ in thought)
    assert all(1 <= int(a) <= items and 1 <= int(b) <= items for _, a, b in ranked)
    searches = re.findall(r"search '(.*)' \(right answer: .*\); gate (\d\.\d\d), (no thought|thought '.*')", first)
    assert len(searches) == len(demo.demo_queries(world))
    hits = re.findall(
        r"^  \d\.\d{3}  (cards\.pdf page \d+  'This is card number \d+\.'|tickets\.pdf page \d+  'Ticket \d+\.'"
        r"|colours\.mp4 t=\d+s  \(a \w+ frame\))(?:  thought '.*')?$",
        first,
        re.M,
    )
    assert len(hits) == 3 * len(searches)
    summary = re.search(
        r"'the card of the friend of X' finds the right card first for (\d+) of (\d+) names \((\d+) queries thought\), "
        r"'the ticket for hall H' the right ticket for (\d+) of (\d+) halls \((\d+) queries thought\)",
        first,
    )
    assert summary and (int(summary[2]), int(summary[5])) == (names, tickets)
    assert int(summary[1]) <= names and int(summary[3]) <= names
    assert int(summary[4]) <= tickets and int(summary[6]) <= tickets
    assert "query budget: thought" in first
    # a second run finds everything indexed
    assert "indexed 0 files (0 items added, 0 old items removed), 3 unchanged" in run_demo(tmp_path / "out")
