"""The NVMe tools end to end against a spydk target subprocess: identify, perf (with verify,
digests, latency report), hello_world, discover; perf's verify catches wrong data."""
from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spydk.apps import nvme_discover, nvme_hello, nvme_identify, nvme_perf
from spydk.testing import TargetProcess, start_target

NQN = "nqn.2016-06.io.spdk:cnode1"
DISC = "nqn.2014-08.org.nvmexpress.discovery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target_config(port: int, *, nqn: str = NQN, blocks: int = 32768, extra_ports: tuple[int, ...] = (),
                  ana_reporting: bool = False) -> dict[str, Any]:
    listeners = []
    for p in (port, *extra_ports):
        addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(p)}
        listeners += [
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": nqn, "listen_address": addr}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": DISC, "listen_address": addr}}]
    return {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": blocks,
                                                        "block_size": 512,
                                                        "uuid": "6a1b0e3c-7c55-4a64-9d59-5d3c1c0de001"}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {
                "nqn": nqn, "allow_any_host": True, "serial_number": "SPDYK42",
                "model_number": "spydk model", "ana_reporting": ana_reporting}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": nqn, "namespace": {"bdev_name": "Malloc0"}}},
            *listeners]}]}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TargetProcess, int]]:
    port = free_port()
    t = start_target(tmp_path_factory.mktemp("tgt"), target_config(port), app="nvmf_tgt")
    try:
        yield t, port
    finally:
        t.stop()


def trid(port: int, nqn: str = NQN) -> str:
    return f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:{nqn}"


def test_identify(target: tuple[TargetProcess, int], capsys: pytest.CaptureFixture[str]) -> None:
    _, port = target
    assert nvme_identify.main(["-r", trid(port)]) == 0
    out = capsys.readouterr().out
    assert f"NVMe over Fabrics controller at 127.0.0.1:{port}: {NQN}" in out
    assert "Serial Number:                         SPDYK42" in out
    assert "Model Number:                          spydk model" in out
    assert f"Subsystem NQN:                         {NQN}" in out
    assert "Namespace ID:1" in out and "Size (in LBAs):                        32768 (0GiB)" in out
    assert "UUID:                                  6a1b0e3c-7c55-4a64-9d59-5d3c1c0de001" in out
    assert "LBA Format #00: Data Size:   512  Metadata Size:     0" in out


@pytest.mark.parametrize("digests", [[], ["-H", "-I"]])
def test_perf_randrw_verify(target: tuple[TargetProcess, int], capsys: pytest.CaptureFixture[str],
                            digests: list[str]) -> None:
    _, port = target
    rc = nvme_perf.main(["-q", "16", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "1", "--verify",
                         "-LL", "--plot", "-r", trid(port), *digests])
    out = capsys.readouterr()
    assert rc == 0, out.err
    name = f"TCP (addr:127.0.0.1 subnqn:{NQN}) NSID 1"
    assert f"Associating {name} with lcore 0" in out.out
    row = next(line for line in out.out.splitlines() if line.startswith(f"{name} from core  0:"))
    iops, mib, avg, lo, hi = (float(x) for x in row.rsplit(":", 1)[1].split())
    assert iops > 0 and lo <= avg <= hi and abs(mib - iops * 4096 / 2**20) < 0.1
    assert "Summary latency data for" in out.out and " 50.00000% : " in out.out
    assert "       Range in us     Cumulative    IO count" in out.out
    assert "Latency plot for" in out.out


def test_perf_sequential_write_splits_large_io(target: tuple[TargetProcess, int],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, port = target
    assert nvme_perf.main(["-q", "4", "-o", "262144", "-w", "write", "-t", "0.5", "-r", trid(port)]) == 0
    assert "Total" in capsys.readouterr().out


def test_perf_two_queues_two_controllers_progress(target: tuple[TargetProcess, int],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, port = target
    rc = nvme_perf.main(["-q", "8", "-o", "4096", "-w", "randread", "-t", "1.5", "-P", "2", "--progress",
                         "-r", trid(port), "-r", trid(port)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert out.out.count("Attached to NVMe over Fabrics controller") == 2
    rows = [line for line in out.out.splitlines() if " from core  0: " in line]
    assert len(rows) == 2 and all(float(r.rsplit(":", 1)[1].split()[0]) > 0 for r in rows)
    assert " IOPS, " in out.err and " MiB/s" in out.err


def test_perf_bad_flags_are_refused(target: tuple[TargetProcess, int]) -> None:
    _, port = target
    with pytest.raises(SystemExit, match="-M"):
        nvme_perf.main(["-q", "1", "-o", "4096", "-w", "rw", "-t", "1", "-r", trid(port)])
    with pytest.raises(SystemExit, match="trsvcid"):
        nvme_perf.main(["-q", "1", "-o", "4096", "-w", "read", "-t", "1", "-r", "trtype:TCP traddr:x trsvcid:no"])


def test_hello_world_and_discover_via_the_spydk_command(target: tuple[TargetProcess, int]) -> None:
    _, port = target
    spydk = Path(sys.executable).with_name("spydk")
    r = subprocess.run([str(spydk), "hello_world", "-r", trid(port)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["Hello world!", ""]
    assert "Attached to 127.0.0.1" in r.stdout and "  Namespace ID: 1 size: 0GB" in r.stdout
    r = subprocess.run([str(spydk), "discover", "-r", f"trtype:TCP traddr:127.0.0.1 trsvcid:{port}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Discovery Log Number of Records 2" in r.stdout
    assert f"subnqn:  {NQN}" in r.stdout and f"trsvcid: {port}" in r.stdout


def test_unreachable_target_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert nvme_hello.main(["-r", trid(port)]) == 1
    assert "cannot attach" in capsys.readouterr().err
    assert nvme_discover.main(["-r", f"trtype:TCP traddr:127.0.0.1 trsvcid:{port}"]) == 1


class _Liar:
    """A synchronous fake qpair whose reads of written blocks come back with a wrong tag."""

    def __init__(self) -> None:
        self.mem: dict[int, bytes] = {}
        self.bad_reads = 0

    def write(self, nsid: int, buf: memoryview, lba: int, nlb: int, cb: Any, arg: Any) -> None:
        self.mem[lba] = bytes(buf)
        cb(arg, 0, 0)

    def read(self, nsid: int, buf: memoryview, lba: int, nlb: int, cb: Any, arg: Any) -> None:
        data = self.mem.get(lba)
        if data is not None:
            data = data[:8] + bytes(8) + data[16:]  # the generation field of the tag is wrong
            self.bad_reads += 1
        buf[:] = data or bytes(len(buf))
        cb(arg, 0, 0)


class _Ns:
    nsid, block_size = 1, 512


class _Ctrlr:
    failure, state = None, "ready"


@pytest.mark.parametrize("liar", [True, False])
def test_verify_detects_wrong_data(liar: bool) -> None:
    args = nvme_perf.build_parser().parse_args(["-q", "1", "-o", "512", "-w", "rw", "-M", "50", "-t", "1",
                                                "-d", "40", "--verify", "--seed", "3", "-r", "trtype:TCP traddr:x"])
    run = nvme_perf.Run(args)
    q = _Liar()
    if not liar:
        q.read = lambda nsid, buf, lba, nlb, cb, arg: (buf.__setitem__(slice(None), q.mem.get(lba, bytes(512))),  # type: ignore[method-assign]
                                                       cb(arg, 0, 0))
    st = nvme_perf.NsStats(False)
    w = nvme_perf.Worker(run, _Ctrlr(), _Ns(), q, st, 1)  # type: ignore[arg-type]
    run.outstanding = 1
    w.start(1)  # completions are synchronous: the run goes until -d 40 stops it
    assert st.io_completed == 40 and run.outstanding == 0
    assert st.miscompares == (q.bad_reads if liar else 0)
    if liar:
        assert q.bad_reads > 0


def test_perf_over_tls_and_with_dhchap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """spydk perf -S ssl --psk-path (as spdk_nvme_perf) against a secure-channel listener, and
    --dhchap-key / --dhchap-ctrlr-key against a subsystem whose host must authenticate."""
    from spydk.nvme.auth.dhchap import generate_secret
    from spydk.nvme.tls_psk import format_interchange
    host = "nqn.2016-06.io.spdk:host1"
    files = {}
    for name, text in (("psk", format_interchange(bytes(range(32)), 1)), ("hk", generate_secret(32, 1)),
                       ("ck", generate_secret(48, 0)), ("wrong", generate_secret(32, 0))):
        files[name] = tmp_path / name
        files[name].write_text(text)
        files[name].chmod(0o600)
    tls_port, auth_port = free_port(), free_port()
    cfg = target_config(auth_port)
    nvmf = cfg["subsystems"][1]["config"]
    nvmf[1]["params"]["allow_any_host"] = False
    tnqn = "nqn.2016-06.io.spdk:tls"
    nvmf += [
        {"method": "nvmf_subsystem_add_host", "params": {"nqn": NQN, "host": host, "dhchap_key": "hk",
                                                         "dhchap_ctrlr_key": "ck"}},
        {"method": "nvmf_create_subsystem", "params": {"nqn": tnqn}},
        {"method": "nvmf_subsystem_add_ns", "params": {"nqn": tnqn, "namespace": {"bdev_name": "Malloc1"}}},
        {"method": "nvmf_subsystem_add_listener", "params": {"nqn": tnqn, "secure_channel": True, "listen_address": {
            "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(tls_port)}}},
        {"method": "nvmf_subsystem_add_host", "params": {"nqn": tnqn, "host": host, "psk": "psk"}}]
    cfg["subsystems"][0]["config"].append({"method": "bdev_malloc_create", "params": {
        "name": "Malloc1", "num_blocks": 8192, "block_size": 512}})
    cfg["subsystems"].insert(0, {"subsystem": "keyring", "config": [
        {"method": "keyring_file_add_key", "params": {"name": n, "path": str(files[n])}} for n in ("psk", "hk", "ck")]})
    t = start_target(tmp_path / "tgt", cfg, app="nvmf_tgt")
    try:
        base = ["-q", "8", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "0.5", "--verify", "--hostnqn", host]
        runs = (["-r", trid(tls_port, tnqn), "-S", "ssl", "--psk-path", str(files["psk"])],
                ["-r", trid(auth_port), "--dhchap-key", str(files["hk"])],
                ["-r", trid(auth_port), "--dhchap-key", str(files["hk"]), "--dhchap-ctrlr-key", str(files["ck"])])
        for extra in runs:
            assert nvme_perf.main(base + extra) == 0, capsys.readouterr().err
            out = capsys.readouterr().out
            row = next(line for line in out.splitlines() if line.startswith("Total"))
            assert float(row.rsplit(":", 1)[1].split()[0]) > 0
        with pytest.raises(SystemExit):
            nvme_perf.main(base + ["-r", trid(auth_port), "--dhchap-key", str(files["wrong"])])
        assert "DH-HMAC-CHAP on queue 0 failed" in capsys.readouterr().err
        with pytest.raises(SystemExit, match="-S ssl"):
            nvme_perf.main(base + ["-r", trid(tls_port, tnqn), "--psk-path", str(files["psk"])])
    finally:
        t.stop()
    log = t.log.read_text(errors="replace")
    assert "authenticated" in log or "DH-HMAC-CHAP" in log
    assert not any(files[n].read_text().split(":")[2] in log for n in ("psk", "hk", "ck"))
