"""A real ``chroma run`` server from the chromadb wheel, bound to 127.0.0.1 only."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_chroma_server(data_dir: Path) -> Iterator[str]:
    """Start ``chroma run`` storing under ``data_dir``; yields its URL and stops it on exit.
    ``RuntimeError`` (with the server's log) when it exits or does not answer in time."""
    import chromadb

    executable = Path(sys.executable).with_name("chroma")
    port = free_port()
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(executable), "run", "--path", str(data_dir / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"chroma run exited with {server.returncode}:\n{log_path.read_text()}")
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"chroma run did not answer within {STARTUP_TIMEOUT_S} s") from None
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
