"""kill -9 of a process writing to thin lvols while it takes snapshots, clones and deletes
snapshots, at 50 random moments on one image: after each kill the store loads (a dirty
load rebuilding the masks, finishing or undoing an interrupted snapshot operation),
every acknowledged write reads back, and the checker finds no leaked or doubly owned
cluster after a clean unload."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from spydk.blob import FileBsDev
from spydk.blob.check import check, read_blob
from spydk.lvol import LvolStore

WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]
BLOCK = 4096
KILLS = 50


class Model:
    """What each volume must read: block -> tag of its last acknowledged write, or None
    when a write to it was in flight at the kill (either value may be on disk)."""

    def __init__(self) -> None:
        self.vols: dict[str, dict[int, int | None]] = {}
        self.history: list[str] = []

    def apply(self, lines: list[str]) -> None:
        begun: dict[tuple[str, int], int] = {}
        pending_md: list[list[str]] = []
        self.history.extend(line for line in lines if line[:1] in "VSCDR")
        for line in lines:
            w = line.split()
            if not w:
                continue
            if w[0] == "VOL":
                self.vols[w[1]] = {}
            elif w[0] == "WB":
                begun[(w[1], int(w[2]))] = int(w[3])
            elif w[0] == "WA":
                key = (w[1], int(w[2]))
                if begun.get(key) == int(w[3]):
                    del begun[key]
                self.vols.setdefault(w[1], {})[int(w[2])] = int(w[3])
            elif w[0] in ("SB", "CB", "DB"):
                pending_md.append(w)
            elif w[0] == "SA":
                pending_md.pop()
                self.vols[w[2]] = dict(self.vols.get(w[1], {}))
            elif w[0] == "CA":
                pending_md.pop()
                self.vols[w[2]] = dict(self.vols.get(w[1], {}))
            elif w[0] == "DA":
                pending_md.pop()
                self.vols.pop(w[1], None)
        for (name, blk), _tag in begun.items():         # in flight at the kill
            self.vols.setdefault(name, {})[blk] = None
        for w in pending_md:                             # a snapshot/clone/delete in flight
            if w[0] in ("SB", "CB"):
                self.vols.pop(w[2], None)
            else:
                self.vols.pop(w[1], None)


async def _verify(image: Path, model: Model) -> tuple[int, int]:
    dev = FileBsDev(str(image), writable=True)
    try:
        lvs = await LvolStore.load(dev)                 # dirty load: masks rebuilt
        names = {lv.name: lv for lv in lvs.lvols.values()}
        checked = 0
        for vol, blocks in model.vols.items():
            lv = names.get(vol)
            assert lv is not None, f"volume {vol} lost (have {sorted(names)}): " + \
                " | ".join(h for h in model.history if vol in h or "READY" in h)
            for blk, tag in blocks.items():
                if tag is None:
                    continue
                got = await read_blob(lvs.bs, lv.blob, blk * BLOCK, BLOCK)
                want = tag.to_bytes(8, "little") * (BLOCK // 8)
                assert got == want, f"{vol} block {blk}: acknowledged write {tag:#x} not read back"
                checked += 1
        await lvs.unload()
        rep = await check(dev)
        assert rep.ok, rep.to_json()
        return checked, len(names)
    finally:
        dev.close()


def test_kill_9_during_writes_snapshots_clones(tmp_path: Path) -> None:
    image = tmp_path / "lvs.img"
    image.write_bytes(b"")
    os.truncate(image, 64 << 20)   # sparse
    model = Model()
    rng = random.Random(11)
    total_checked = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cycle in range(1, KILLS + 1):
        errf = open(tmp_path / "worker.err", "w+")  # noqa: SIM115
        p = subprocess.Popen([sys.executable, str(WORKER), str(image), str(rng.randrange(1 << 30)), str(cycle)],
                             stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
        assert p.stdout is not None
        lines = []
        while True:
            line = p.stdout.readline()
            assert line, f"worker ended before READY: {(tmp_path / 'worker.err').read_text()}"
            lines.append(line)
            if line.startswith("READY"):
                break
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(p.pid, signal.SIGKILL)
        out = p.stdout.read()     # the same buffered reader: nothing it already holds is lost
        p.wait(timeout=30)
        errf.close()
        assert p.returncode == -signal.SIGKILL, f"worker failed: {(tmp_path / 'worker.err').read_text()[-2000:]}"
        text = "".join(lines) + out
        complete = text.split("\n")[:-1] if not text.endswith("\n") else text.split("\n")
        model.apply(complete)
        checked, _ = asyncio.run(_verify(image, model))
        total_checked += checked
    assert total_checked > 100
