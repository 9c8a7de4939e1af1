"""Helpers for tests that run a whole daemon, in this process or in a child process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from crossbook.service.app import Addresses, Daemon
from crossbook.service.config import load
from crossbook.service.plugins import load_connectors

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def reloader(path: Path) -> Callable[[], tuple[Any, Any]]:
    """What ``Daemon.reloader`` is in ``crossbook run``: the config at ``path`` read again."""

    def reload() -> tuple[Any, Any]:
        config = load(path, environ={})
        return config, config.venues(load_connectors(config.settings.plugins))

    return reload


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path, toml: str) -> AsyncIterator[tuple[Daemon, Addresses]]:
    """Run a daemon in this event loop on ephemeral ports (a ``[server]`` table in ``toml`` keeps
    its other keys); cancelled on exit."""
    path = tmp_path / "crossbook.toml"
    listen = 'host = "127.0.0.1"\nport = 0\n'
    if "[server]\n" in toml:
        toml = toml.replace("[server]\n", "[server]\n" + listen)
    else:
        toml += "\n[server]\n" + listen
    path.write_text(toml + "\n[metrics]\n" + listen)
    config = load(path, environ={})
    registry = load_connectors(config.settings.plugins, config.settings.disabled_plugins)
    daemon = Daemon(config, config.venues(registry))
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(lambda task_status: daemon.run(handle_signals=False, task_status=task_status))
        yield daemon, addresses
        tg.cancel_scope.cancel()


class DaemonProcess:
    """A ``python -m crossbook run`` child; its stderr is drained into ``lines`` by a thread."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.api_port = self.metrics_port = 0
        self._started = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crossbook", "run", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if m := re.search(r"metrics on http://[\d.]+:(\d+)/", line):
                self.metrics_port = int(m.group(1))
            if m := re.search(r"API listening on ws://[\d.]+:(\d+)/", line):
                self.api_port = int(m.group(1))
                self._started.set()
        self._started.set()

    def wait_started(self, timeout: float = 30) -> None:
        self._started.wait(timeout)
        assert self.api_port, "daemon did not start:\n" + self.log
        assert self.metrics_port, "daemon did not start:\n" + self.log

    @property
    def log(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def daemon_process(*args: str, env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    """Start the daemon in a child process on ephemeral ports, killed on exit if still running."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSBOOK_")}
    full_env |= {
        "CROSSBOOK_SERVER__PORT": "0",
        "CROSSBOOK_METRICS__PORT": "0",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    daemon = DaemonProcess(args, full_env)
    try:
        daemon.wait_started()
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        daemon.proc.wait(10)


async def metric(daemon: Any, name: str, labels: dict[str, str] | None = None, at_least: float = 1) -> float:
    """Wait for a metric to reach a value (connection teardown runs after the client sees the close)."""
    with anyio.fail_after(10):
        while (value := daemon.metrics.registry.get_sample_value(name, labels or {}) or 0) < at_least:  # noqa: ASYNC110
            await anyio.sleep(0.01)  # metrics have no change event; poll briefly
    return float(value)


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server is required under CI (Debian package 'nats-server')")
        pytest.skip("nats-server not installed (Debian package 'nats-server')")
    return found


class NatsServer:
    """A nats-server child with JetStream on loopback; ``start`` again after ``stop`` keeps its port."""

    def __init__(self, binary: str, root: Path, *args: str) -> None:
        self.binary, self.root, self.args = binary, root, args
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ports = self.root / "ports"
        shutil.rmtree(ports, ignore_errors=True)
        ports.mkdir()
        args = ["-a", "127.0.0.1", "-p", str(self.port or -1), "-js", "-sd", str(self.root / "store"), *self.args]
        self.proc = subprocess.Popen([self.binary, *args, "--ports_file_dir", str(ports)], stderr=subprocess.DEVNULL)
        for _ in range(1000):  # the ports file appears once it listens: no event to await
            files = list(ports.glob("*.ports"))
            if files and files[0].stat().st_size:
                self.port = int(json.loads(files[0].read_text())["nats"][0].rpartition(":")[2])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError("nats-server did not start")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
