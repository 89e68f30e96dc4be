"""Several targets in one app (nvmf_create_target / nvmf_delete_target / nvmf_get_targets and
tgt_name on the other methods), namespace masking (no_auto_visible, nvmf_ns_add_host /
nvmf_ns_remove_host: a host sees and reaches only its namespaces), nvmf_set_crdt."""
from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import pytest

from spydk.nvme import spec
from spydk.nvme.spec import GenericStatus
from spydk.nvmf import rpc as nvmf_rpc
from spydk.nvmf import tgt as tgt_mod
from spydk.rpc.errors import RpcError
from tests.nvmf.helpers import HOSTNQN, MemoryBackend

from .conftest import NQN, Env

OTHER = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000ff"
R = None  # the RPC context the handlers ignore


@pytest.fixture
def menv() -> Iterator[Env]:
    e = Env()
    e.hidden = MemoryBackend(num_blocks=64)  # type: ignore[attr-defined]
    e.subsys.add_namespace("Hidden", e.hidden, nsid=2, auto_visible=False)  # type: ignore[attr-defined]
    tgt_mod.set_target(e.tgt)
    yield e
    tgt_mod.set_target(None)


def ns_list(lk) -> list[int]:  # type: ignore[no-untyped-def]
    data = lk.wait(lk.host.identify(spec.IdentifyCns.ACTIVE_NS_LIST)).data
    ids = struct.unpack("<1024I", data)
    return [i for i in ids if i]


def test_a_host_sees_only_its_namespaces(menv: Env) -> None:
    adm, cntlid = menv.admin()
    # namespace-changed events on
    assert adm.wait(adm.host.admin(spec.AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.ASYNC_EVENT_CONFIG,
                                   cdw11=1 << 8)).status == 0
    aer = adm.host.admin(spec.AdminOpcode.ASYNC_EVENT_REQUEST)
    assert ns_list(adm) == [1]
    assert not any(adm.wait(adm.host.identify(spec.IdentifyCns.NAMESPACE, nsid=2)).data)  # inactive
    io = menv.io(cntlid)
    r = io.wait(io.host.read(2, 0, 1, 512))
    assert r.sc == GenericStatus.INVALID_NAMESPACE_OR_FORMAT
    assert nvmf_rpc.nvmf_ns_add_host(R, NQN, 2, HOSTNQN)  # type: ignore[arg-type]
    ev = adm.wait(aer)
    assert ev.status == 0 and (ev.dw0 >> 16) & 0xFF == spec.LogPageId.CHANGED_NS_LIST
    assert ns_list(adm) == [1, 2]
    assert io.wait(io.host.write(2, 3, b"\x5a" * 512, 512)).status == 0
    assert menv.hidden.mem[3 * 512:4 * 512] == b"\x5a" * 512  # type: ignore[attr-defined]
    # another host still does not see it
    other = menv.link()
    assert other.establish(hostnqn=OTHER).status == 0
    other.enable()
    assert ns_list(other) == [1]
    assert nvmf_rpc.nvmf_ns_remove_host(R, NQN, 2, HOSTNQN)  # type: ignore[arg-type]
    assert ns_list(adm) == [1]
    assert io.wait(io.host.read(2, 0, 1, 512)).sc == GenericStatus.INVALID_NAMESPACE_OR_FORMAT
    sub = menv.subsys.to_json()["namespaces"]
    assert sub[1]["no_auto_visible"] is True and sub[1]["hosts"] == []


def test_masking_errors_name_the_problem(menv: Env) -> None:
    with pytest.raises(RpcError, match="visible to every host; add it with no_auto_visible"):
        nvmf_rpc.nvmf_ns_add_host(R, NQN, 1, HOSTNQN)  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="has no namespace 9"):
        nvmf_rpc.nvmf_ns_add_host(R, NQN, 9, HOSTNQN)  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="not visible to"):
        nvmf_rpc.nvmf_ns_remove_host(R, NQN, 2, HOSTNQN)  # type: ignore[arg-type]
    nvmf_rpc.nvmf_ns_add_host(R, NQN, 2, HOSTNQN)  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="already visible"):
        nvmf_rpc.nvmf_ns_add_host(R, NQN, 2, HOSTNQN)  # type: ignore[arg-type]
    cfg = nvmf_rpc.config_json(menv.tgt)
    assert {"method": "nvmf_ns_add_host", "params": {"nqn": NQN, "nsid": 2, "host": HOSTNQN}} in cfg
    ns2 = [c for c in cfg if c["method"] == "nvmf_subsystem_add_ns" and c["params"]["namespace"]["nsid"] == 2]
    assert ns2[0]["params"]["namespace"]["no_auto_visible"] is True


def test_several_targets(menv: Env) -> None:
    assert nvmf_rpc.nvmf_get_targets(R) == ["nvmf_tgt"]  # type: ignore[arg-type]
    assert nvmf_rpc.nvmf_create_target(R, "t2", max_subsystems=8) == "t2"  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="already exists"):
        nvmf_rpc.nvmf_create_target(R, "t2")  # type: ignore[arg-type]
    assert nvmf_rpc.nvmf_get_targets(R) == ["nvmf_tgt", "t2"]  # type: ignore[arg-type]
    nvmf_rpc.nvmf_create_subsystem(R, "nqn.2016-06.io.spdk:t2sub", tgt_name="t2")  # type: ignore[arg-type]
    t2 = tgt_mod.find_target("t2")
    assert t2 is not None and "nqn.2016-06.io.spdk:t2sub" in t2.subsystems
    assert "nqn.2016-06.io.spdk:t2sub" not in menv.tgt.subsystems
    got = nvmf_rpc.nvmf_get_subsystems(R, tgt_name="t2")  # type: ignore[arg-type]
    assert [s["nqn"] for s in got][-1] == "nqn.2016-06.io.spdk:t2sub"
    with pytest.raises(RpcError, match="no target 'nope'.*nvmf_create_target"):
        nvmf_rpc.nvmf_get_subsystems(R, tgt_name="nope")  # type: ignore[arg-type]
    cfg = nvmf_rpc._config(None)
    i = cfg.index({"method": "nvmf_create_target", "params": {"name": "t2", "max_subsystems": 8}})
    assert cfg[i + 1]["method"] == "nvmf_create_subsystem" and cfg[i + 1]["params"]["tgt_name"] == "t2"
    with pytest.raises(RpcError, match="cannot be deleted"):
        asyncio.run(nvmf_rpc.nvmf_delete_target(R, "nvmf_tgt"))  # type: ignore[arg-type]
    assert asyncio.run(nvmf_rpc.nvmf_delete_target(R, "t2"))  # type: ignore[arg-type]
    assert nvmf_rpc.nvmf_get_targets(R) == ["nvmf_tgt"]  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="does not exist"):
        asyncio.run(nvmf_rpc.nvmf_delete_target(R, "t2"))  # type: ignore[arg-type]


def test_crdt_in_identify_controller(menv: Env) -> None:
    assert nvmf_rpc.nvmf_set_crdt(R, crdt1=5, crdt3=7)  # type: ignore[arg-type]
    adm, _ = menv.admin()
    data = adm.wait(adm.host.identify(spec.IdentifyCns.CONTROLLER)).data
    assert struct.unpack_from("<HHH", data, 134) == (5, 0, 7)
    assert {"method": "nvmf_set_crdt", "params": {"crdt1": 5, "crdt2": 0, "crdt3": 7}} in nvmf_rpc.config_json(menv.tgt)
