"""Public testing API: run a spydk application from a test (for spydk's tests and plugin authors).

Test doubles for one layer (in-memory SCSI or NVMe-oF backends, fake transports) are not part
of it: they live beside the tests that use them, under tests/.

Out of process (the real `spydk` command, signals, exit codes)::

    t = start_target(tmp_path, config={"subsystems": [...]})
    t.client.bdev_get_bdevs()
    t.rpc("save_config")          # runs `spydk rpc -s SOCK save_config`, returns CompletedProcess
    rc = t.stop()                 # SIGTERM, waits, returns the exit code; t.log_text() has the output

In process (fast; the app runs on its own event loop in a background OS thread)::

    with AppHarness(subsystems=("bdev",)) as h:
        h.client.spdk_get_version()
        h.run(coro)               # run a coroutine on the app's loop, return its result
        h.call_on_app_thread(fn)  # run fn on the app thread, return its result

Unix socket paths are limited to 107 bytes, so sockets live in a short /tmp directory,
not in pytest's tmp_path.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from spydk.rpc.client import Client, ClientError, NoServerError

READY_TIMEOUT = 30.0


def short_socket_path(prefix: str = "spydk-") -> str:
    """A fresh socket path in a new private directory under /tmp."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    return os.path.join(d, "rpc.sock")


class TargetProcess:
    """A `spydk <app>` subprocess on a private RPC socket."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: str, log: Path, argv: list[str]):
        self.proc = proc
        self.sock = sock
        self.log = log
        self.argv = argv
        self._client: Client | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.sock, timeout=30.0)
        return self._client

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rpc(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `spydk rpc -s SOCK args...`; with check, a non-zero exit raises with its output."""
        cmd = [sys.executable, "-m", "spydk.apps.main", "rpc", "-s", self.sock, *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {res.returncode}\nstdout:\n{res.stdout}\n"
                                 f"stderr:\n{res.stderr}")
        return res

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the target and wait for it; returns its exit code (kills it after timeout)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"target did not exit within {timeout} s of signal {sig}; log:\n"
                                     f"{self.log_text()}") from None
        shutil.rmtree(os.path.dirname(self.sock), ignore_errors=True)
        return self.proc.returncode

    def __enter__(self) -> TargetProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_target(tmp_path: Path | str, config: dict[str, Any] | None = None, app: str = "tgt",
                 extra_args: Sequence[str] = (), *, wait_init: bool = True,
                 env: dict[str, str] | None = None, timeout: float = READY_TIMEOUT) -> TargetProcess:
    """Start `spydk <app>` with ``config`` (written to tmp_path/config.json) and wait until it
    answers RPCs (and, with wait_init, until its subsystems are initialized)."""
    tmp = Path(tmp_path)
    tmp.mkdir(parents=True, exist_ok=True)
    sock = short_socket_path()
    argv = [sys.executable, "-m", "spydk.apps.main", app, "-r", sock, *extra_args]
    if config is not None:
        cfg = tmp / "config.json"
        cfg.write_text(json.dumps(config, indent=2))
        argv += ["--json", str(cfg)]
    log = tmp / f"{app}-{os.path.basename(os.path.dirname(sock))}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
    t = TargetProcess(proc, sock, log, argv)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            shutil.rmtree(os.path.dirname(sock), ignore_errors=True)
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode} before it was ready; "
                               f"log:\n{t.log_text()}")
        try:
            with Client(sock, timeout=max(1.0, deadline - time.monotonic())) as c:
                c.call("spdk_get_version")
                if wait_init:
                    c.call("framework_wait_init")
            return t
        except (NoServerError, ClientError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{' '.join(argv)} not ready after {timeout} s; log:\n{t.log_text()}")
        time.sleep(0.05)


class AppHarness:
    """An App on a private event loop in a background thread, serving RPCs on a temp socket."""

    def __init__(self, config: dict[str, Any] | None = None, *, subsystems: tuple[str, ...] | None = None,
                 wait_for_rpc: bool = False, poll: bool = False, json_ignore_init_errors: bool = False):
        from spydk.apps.app import AppOptions
        self.sock = short_socket_path("spydk-h-")
        self.opts = AppOptions(name="harness", rpc_socket=self.sock, config=config, config_source="<harness>",
                               subsystems=subsystems, wait_for_rpc=wait_for_rpc, poll=poll,
                               json_ignore_init_errors=json_ignore_init_errors)
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self.app: Any = None

    def start(self) -> AppHarness:
        from spydk.apps.app import App
        self.app = App(self.opts)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def main() -> None:
                try:
                    await self.app.start()
                except BaseException as e:
                    failure.append(e)
                    started.set()
                    return
                started.set()
                await self.app.wait_shutdown()
            self.loop.run_until_complete(main())

        self._thread = threading.Thread(target=run, name="spydk-harness", daemon=True)
        self._thread.start()
        started.wait(READY_TIMEOUT)
        if failure:
            self._thread.join(5)
            self.loop.close()
            shutil.rmtree(os.path.dirname(self.sock), ignore_errors=True)
            raise failure[0]
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.sock, timeout=30.0)
        return self._client

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the app's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_on_app_thread(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        return self.run(self.app.run_on_app_thread(fn, *args), timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._thread is None:
            return
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.app.shutdown, "harness stop")
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError("the app did not shut down in time")
        self._thread = None
        with contextlib.suppress(Exception):
            self.loop.close()
        shutil.rmtree(os.path.dirname(self.sock), ignore_errors=True)

    def __enter__(self) -> AppHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
