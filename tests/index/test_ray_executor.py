"""``TWNIndex.add(executor="ray")`` on a local Ray cluster (2 CPUs: one encoder actor, one CPU
left for the loading tasks): the same index as a single-process run, a driver killed with
kill -9 and a worker killed mid-run both end in that index, and a run against a Chroma server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from support.allocation import ITEMS, RATIO, TOKENS, assert_same_index, budget, run_killed_writer, state_of
from support.chroma_server import running_chroma_server

from twn_rag.index import TWNIndex
from twn_rag.index.budget_store import PENDING_KEY


@pytest.fixture(scope="module")
def ray_cluster():
    """One local cluster for the module (it takes seconds to start)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _assert_exact(index, reference) -> None:
    state = state_of(index)
    assert_same_index(state, reference[0])
    assert state.ledger[:2] == (ITEMS, int(RATIO * ITEMS)) and state.ledger[2] >= state.record_tokens
    assert json.loads(index.budgets.metadata().get(PENDING_KEY, "{}")) == {}


def test_a_ray_run_gives_the_single_process_index(ray_cluster, tmp_path, embedder, corpus, reference):
    folder, _ = corpus
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=budget())
    report = index.add([folder], executor="ray", workers=1, batch_size=3)
    assert report.ok and report.items_added == ITEMS and report.items_thought == int(RATIO * ITEMS)
    _assert_exact(index, reference)
    assert state_of(index).ledger == reference[0].ledger  # the same thoughts, token for token
    assert len(list(index.images_dir.iterdir())) == ITEMS  # written by the loading tasks


def test_a_driver_killed_mid_run_is_resumed_by_the_next_run(
    ray_cluster, tmp_path, tiny_ckpt, embedder, corpus, reference
):
    folder, _ = corpus
    limits = {"threshold": 0.0, "max_think_ratio": RATIO, "max_thought_tokens": TOKENS}
    address = ray_cluster.get_runtime_context().gcs_address
    run_killed_writer(tiny_ckpt, tmp_path / "index", folder, "_store_thoughts", 1, limits, "ray", address)
    index = TWNIndex.open(tmp_path / "index", embedder)
    killed = state_of(index)
    assert 0 < len(killed.thinkers) < 4 and not killed.final  # killed in pass 3
    index.add([folder], executor="ray")
    _assert_exact(index, reference)


def _kill_an_encoder_worker(ray, killed: list[int], stop: threading.Event) -> None:
    """Kill -9 the process of the first live encoder actor (Ray restarts it). The actor table
    comes from the GCS (``ray._private.state``: the public state API needs the dashboard)."""
    while not stop.is_set() and not killed:
        for actor in ray._private.state.actors().values():
            if "MapWorker" in actor["ActorClassName"] and actor["State"] == "ALIVE" and actor.get("Pid"):
                time.sleep(0.2)  # let it start on its batches
                try:
                    os.kill(actor["Pid"], signal.SIGKILL)
                except ProcessLookupError:  # it ended meanwhile: look for a live one again
                    continue
                killed.append(actor["Pid"])
                return
        time.sleep(0.2)


def test_a_worker_killed_mid_run_is_restarted_and_the_index_is_exact(
    ray_cluster, tmp_path, embedder, corpus, reference
):
    folder, _ = corpus
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=budget())
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_an_encoder_worker, args=(ray_cluster, killed, stop))
    killer.start()
    try:
        report = index.add([folder], executor="ray", batch_size=1)
    finally:
        stop.set()
        killer.join()
    assert killed and report.ok
    _assert_exact(index, reference)


def test_a_ray_run_into_a_chroma_server(ray_cluster, tmp_path, embedder, corpus, reference):
    folder, _ = corpus
    with running_chroma_server(tmp_path / "server") as url:
        index = TWNIndex.open(tmp_path / "index", embedder, chroma_url=url, document_budget=budget())
        assert index.add([folder], executor="ray").ok
        _assert_exact(TWNIndex.open(tmp_path / "index", chroma_url=url), reference)


def test_the_cli_indexes_with_ray(ray_cluster, tmp_path, tiny_ckpt, corpus):
    from typer.testing import CliRunner

    from twn_rag.cli import app

    folder, _ = corpus
    args = ["index", str(folder), "--index", str(tmp_path / "index"), "--model", str(tiny_ckpt), "--think-ratio", "0.4"]
    result = CliRunner().invoke(app, [*args, "--ray", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["items_added"] == ITEMS and report["items_thought"] == int(RATIO * ITEMS)
