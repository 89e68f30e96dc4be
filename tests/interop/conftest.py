"""Fixtures for the interop tests: a cached guest image (built once per machine), a
guest runner, and host-side targets (spydk, tgt, qemu-storage-daemon).

On a failed test the guest console and every target log of that test are added to
the report as sections.  ``pytest -s`` also streams the guest console live.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from . import guest_run
from .targets import (
    QsdTarget,
    SpydkTarget,
    TgtTarget,
    free_tcp_port,
    start_qsd,
    start_spydk,
    start_tgt,
)

GUEST_DIR = Path(__file__).resolve().parent / "guest"
LOGS = pytest.StashKey[list[tuple[str, Path]]]()

RunGuest = Callable[..., guest_run.GuestResult]


T = TypeVar("T")

def _attach(node: pytest.Item, title: str, path: Path) -> None:
    node.stash.setdefault(LOGS, []).append((title, path))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    rep = yield
    if rep.failed and not hasattr(rep, "wasxfail"):
        for title, path in item.stash.get(LOGS, []):
            try:
                text = path.read_text(errors="replace")
            except OSError as e:
                text = f"(cannot read {path}: {e})"
            rep.sections.append((f"{title} ({path})", text[-20000:]))
    return rep


def _workdir(tmp_path: Path, stack: list[Path], name: str) -> Path:
    # Unix socket paths are limited to 107 bytes: work in a short folder under /tmp,
    # and copy the logs into pytest's tmp_path (kept for the last runs) at teardown.
    d = Path(tempfile.mkdtemp(prefix=f"spydk-{name}-", dir="/tmp"))
    stack.append(d)
    return d


def _keep_logs(tmp_path: Path, dirs: list[Path]) -> None:
    for d in dirs:
        for log in d.glob("*.log"):
            shutil.copyfile(log, tmp_path / f"{d.name}-{log.name}")
        for cfg in d.glob("*.json"):
            shutil.copyfile(cfg, tmp_path / f"{d.name}-{cfg.name}")
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def guest_image() -> guest_run.GuestImage:
    """The kernel and base initramfs; built on first use per machine (about 15 s), then
    taken from the cache (see guest_run.default_cache_dir).  A missing tool is an error."""
    try:
        return guest_run.prepare()
    except guest_run.GuestError as e:
        pytest.fail(f"cannot prepare the guest image: {e}", pytrace=False)


@pytest.fixture(scope="session")
def guest_image_612() -> guest_run.GuestImage:
    """Debian 12's 6.12 kernel (NVMe in-band authentication) with the same userland."""
    try:
        return guest_run.prepare(kernel="6.12")
    except guest_run.GuestError as e:
        pytest.fail(f"cannot prepare the 6.12 guest image: {e}", pytrace=False)


@pytest.fixture
def run_guest(guest_image: guest_run.GuestImage, request: pytest.FixtureRequest,
              tmp_path: Path) -> RunGuest:
    """``run_guest(script, env=None, *, timeout=300, vhost_user_blk=(), disks=(), **kw)
    -> GuestResult``.  ``script``: a file name under tests/interop/guest/ (str), a file
    (Path), or the script text itself (bytes).  The console goes to a log file that is
    attached to the report when the test fails."""
    return _runner(guest_image, request, tmp_path)


@pytest.fixture
def run_guest_612(guest_image_612: guest_run.GuestImage, request: pytest.FixtureRequest,
                  tmp_path: Path) -> RunGuest:
    """As run_guest, booting the 6.12 kernel (guest_run.py --kernel 6.12)."""
    return _runner(guest_image_612, request, tmp_path)


def _runner(guest_image: guest_run.GuestImage, request: pytest.FixtureRequest, tmp_path: Path) -> RunGuest:
    live = request.config.getoption("capture") == "no"
    count = 0

    def run(script: str | Path | bytes, env: Mapping[str, str] | None = None, *,
            timeout: float = 300, vhost_user_blk: Sequence[str | Path] = (),
            vhost_user_scsi: Sequence[str | Path] = (), disks: Sequence[str | Path] = (),
            **kw: Any) -> guest_run.GuestResult:
        nonlocal count
        count += 1
        if isinstance(script, str):
            script = GUEST_DIR / script
        text = script if isinstance(script, bytes) else script.read_bytes()
        log = tmp_path / f"guest-console-{count}.log"
        _attach(request.node, "guest console", log)
        with open(log, "w") as f:
            def on_line(line: str) -> None:
                f.write(line + "\n")
                f.flush()
                if live:
                    print(line, flush=True)
            res = guest_run.run(guest_image, text, env=env, timeout=timeout,
                                vhost_user_blk=vhost_user_blk, vhost_user_scsi=vhost_user_scsi,
                                disks=disks, on_line=on_line,
                                **kw)
            boot = "n/a" if res.boot_s is None else f"{res.boot_s:.1f} s"
            f.write(f"-- guest exit {res.rc}, boot {boot}, total {res.total_s:.1f} s, "
                    f"timed out: {res.timed_out}\n")
        request.node.user_properties.append(("guest_boot_s", res.boot_s))
        request.node.user_properties.append(("guest_total_s", round(res.total_s, 1)))
        return res

    return run


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port() -> int``: a distinct free TCP port on 127.0.0.1 per call."""
    given: set[int] = set()

    def pick() -> int:
        for _ in range(50):
            p = free_tcp_port()
            if p not in given:
                given.add(p)
                return p
        raise RuntimeError("no free port")

    return pick


def _targets(request: pytest.FixtureRequest, tmp_path: Path, folder: str, title: str, log_name: str,
             starter: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """Shared body of the target fixtures: each start gets its own folder whose log is
    attached to the test report; every target started is stopped at teardown."""
    started: list[Any] = []
    dirs: list[Path] = []

    def start(*args: Any, **kw: Any) -> T:
        wd = _workdir(tmp_path, dirs, folder)
        _attach(request.node, title, wd / log_name)
        t = starter(wd, *args, **kw)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()
    _keep_logs(tmp_path, dirs)


@pytest.fixture
def spydk_target(request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[Callable[..., SpydkTarget]]:
    """``spydk_target(config: dict, *, timeout=30, extra_args=()) -> SpydkTarget``: start
    ``spydk tgt -r <sock> --json <config>`` (the spydk beside this interpreter) in its own folder (its cwd), wait
    until the RPC socket answers spdk_get_version, stop it (SIGINT) at teardown."""
    def starter(wd: Path, config: dict[str, Any], *, timeout: float = 30,
                extra_args: tuple[str, ...] = ()) -> SpydkTarget:
        return start_spydk(config, wd, timeout=timeout, extra_args=extra_args)
    yield from _targets(request, tmp_path, "tgt", "spydk target log", "spydk.log", starter)


@pytest.fixture
def tgt_target(request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[Callable[..., TgtTarget]]:
    """``tgt_target(*, iqn=..., lun_mb=64, chap=None) -> TgtTarget``: Debian's tgtd on a
    free 127.0.0.1 port with one file-backed LUN; stopped through tgtadm at teardown."""
    yield from _targets(request, tmp_path, "tgtd", "tgtd log", "tgtd.log", start_tgt)


@pytest.fixture
def qsd_target(request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[Callable[..., QsdTarget]]:
    """``qsd_target(*, size_mb=64) -> QsdTarget``: qemu-storage-daemon serving a raw
    file over vhost-user-blk (QsdTarget.socket_path, QsdTarget.backing)."""
    yield from _targets(request, tmp_path, "qsd", "qemu-storage-daemon log", "qsd.log", start_qsd)
