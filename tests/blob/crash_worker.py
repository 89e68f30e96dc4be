"""The workload the kill -9 test runs in a subprocess: an aio bdev over IMAGE, the lvol
module (examine loads the store), and a loop of concurrent 4 KiB writes, snapshots,
clones and snapshot deletions. Every step is printed when it starts and when it is
acknowledged; the test kills this process at a random moment and checks the image.

    python crash_worker.py IMAGE SEED CYCLE
"""
from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import spydk.bdev  # noqa: F401
import spydk.modules.bdev.lvol  # noqa: F401
from spydk.apps.app import on_thread
from spydk.bdev import wait_for_examine
from spydk.bdev.awaitable import AsyncDesc
from spydk.lvol import LvsOpts
from spydk.modules.bdev.aio import create_aio_disk
from spydk.modules.bdev.lvol import lvol as v
from spydk.thread import init_reactor

BLOCK = 4096
VOL_MB = 2
CLUSTER = 64 * 1024


def say(*words: Any) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def pattern(tag: int) -> bytes:
    return tag.to_bytes(8, "little") * (BLOCK // 8)


async def main(image: str, seed: int, cycle: int) -> None:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    reactor = init_reactor(loop)
    t = reactor.create_thread("app_thread")

    def setup() -> None:
        create_aio_disk("aio0", image, 512)
    await reactor.call_on(t, setup)
    done = loop.create_future()
    await reactor.call_on(t, wait_for_examine, lambda: done.set_result(None))
    await done
    if not v.module.stores:
        s = await on_thread(v.create_lvs("aio0", LvsOpts("lvs", cluster_sz=CLUSTER), t), t)
        lv = await on_thread(s.lvs.create_lvol("v0", VOL_MB << 20, thin=True), t)
        v.register_new_lvol(s, lv)
        say("VOL v0")
    s = v.module.stores[0]
    say("READY")
    descs: dict[str, AsyncDesc] = {}
    tag = (cycle << 32) | 1
    n = 0
    while True:
        vols = [b for b in s.bdevs.values() if not b.blob.read_only]
        snaps = [b for b in s.bdevs.values() if b.blob.read_only]
        r = rng.random()
        if s.lvs.bs.free_clusters < 160 or len(s.bdevs) > 20:
            r = 1.0                                        # make room: delete something
        if r < 0.8 and vols:
            writes = []
            for _ in range(rng.randint(1, 6)):
                b = rng.choice(vols)
                name = b.lvol.name
                if name not in descs:
                    descs[name] = await AsyncDesc.open(b.name, write=True, thread=t)
                blk = rng.randrange(VOL_MB * (1 << 20) // BLOCK)
                if any(w[0] == name and w[1] == blk for w in writes):
                    continue    # overlapping writes in flight have no defined order
                tag += 1
                say("WB", name, blk, tag)
                writes.append((name, blk, tag, descs[name].write(blk * BLOCK, pattern(tag))))
            for name, blk, tg, aw in writes:
                await aw
                say("WA", name, blk, tg)
        elif r < 0.88 and vols:
            b = rng.choice(vols)
            n += 1
            sn = f"s{cycle}_{n}"
            say("SB", b.lvol.name, sn)
            lv = await on_thread(s.lvs.snapshot(b.lvol, sn), t)
            v.register_new_lvol(s, lv)
            say("SA", b.lvol.name, sn)
        elif r < 0.95 and snaps and len(s.bdevs) < 24:
            b = rng.choice(snaps)
            n += 1
            cn = f"c{cycle}_{n}"
            say("CB", b.lvol.name, cn)
            lv = await on_thread(s.lvs.clone(b.lvol, cn), t)
            v.register_new_lvol(s, lv)
            say("CA", b.lvol.name, cn)
        else:
            cand = [b for b in snaps if len(b.blob.clones()) <= 1]
            cand += [b for b in vols if b.lvol.name != "v0" and not b.blob.clones()]
            if not cand:
                continue
            b = rng.choice(cand)
            say("DB", b.lvol.name)
            lvs, lv = s.lvs, b.lvol
            fut = loop.create_future()
            await reactor.call_on(t, v.unregister_bdev, b, fut.set_result)
            await fut
            await on_thread(lvs.delete_lvol(lv), t)
            say("DA", lv.name)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
