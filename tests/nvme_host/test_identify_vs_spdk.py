"""`spydk identify` output against spdk_nvme_identify's, without SPDK: the fixtures hold what
SPDK v24.01's nvmf_tgt returned to spydk's driver (Identify Controller/Namespace, CAP, VS,
Get Features) and what spdk_nvme_identify printed for the same target (64 MiB malloc
namespace). They were made by tests/nvme_host/fixtures/capture_spdk.py with SPDK's target
started as in /work/spdk-build/READY (nvmf_tgt --no-huge -s 1024 --no-pci
--disable-cpumask-locks; bdev_malloc_create -b M0 64 512; nvmf_create_subsystem -a
-s SPDK00000000000001 -m 8; a TCP listener on 127.0.0.1)."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from spydk.apps.nvme_identify import print_controller
from spydk.nvme.host import Controller, parse_trid
from spydk.nvme.host.ctrlr import Namespace
from spydk.nvme.host.identify import parse_identify_controller, parse_identify_namespace
from spydk.nvme.spec import FeatureId

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_line_matches_spdk_nvme_identify() -> None:
    with gzip.open(FIXTURES / "spdk_nvmf_tgt_identify.json.gz", "rt") as f:
        d = json.load(f)
    with gzip.open(FIXTURES / "spdk_nvme_identify.txt.gz", "rt") as f:
        spdk_lines = set(f.read().splitlines())
    port = d["trid"].split("trsvcid:")[1].split()[0]
    c = Controller(parse_trid(d["trid"]))
    c.cap, c.vs, c.num_io_queues_granted = d["cap"], d["vs"], d["granted"]
    c.cdata = parse_identify_controller(bytes.fromhex(d["cdata"]))
    for nsid, raw in d["ns"].items():
        data = parse_identify_namespace(bytes.fromhex(raw))
        c.namespaces[int(nsid)] = Namespace(int(nsid), data, data.anagrpid)
    feats: dict[object, int] = {}
    for k, v in d["features"].items():
        if k.startswith("tler:"):
            feats[("tler", int(k.split(":")[1]))] = v
        else:
            feats[FeatureId(int(k))] = v
    out = io.StringIO()
    print_controller(c, out, feats=feats)
    ours = [line.replace(f":{port}:", ":PORT:") for line in out.getvalue().splitlines() if line]
    missing = [line for line in ours if line not in spdk_lines]
    assert not missing, f"lines spdk_nvme_identify does not print: {missing}"
    assert len(ours) >= 170
    assert "Serial Number:                         SPDK00000000000001" in ours
