"""`spydk rpc` commands for the NVMe-oF target, with rpc.py's flags and positional arguments."""
from __future__ import annotations

import argparse
from typing import Any

from spydk.rpc.cli import Call, print_dict, print_json

DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
ANA_STATES = ["optimized", "non_optimized", "inaccessible"]
_TRANSPORT_ARGS = ("trtype", "tgt_name", "max_queue_depth", "max_io_qpairs_per_ctrlr",
                   "in_capsule_data_size", "max_io_size", "io_unit_size", "max_aq_depth",
                   "num_shared_buffers", "buf_cache_size", "zcopy", "dif_insert_or_strip",
                   "sock_priority", "acceptor_backlog", "abort_timeout_sec", "control_msg_num",
                   "ack_timeout", "kas", "min_kato")


def _nqn(n: str) -> str:
    return DISCOVERY_NQN if n == "discovery" else n


def _address(a: argparse.Namespace) -> dict[str, Any]:
    addr = {"trtype": a.trtype, "traddr": a.traddr}
    if a.adrfam:
        addr["adrfam"] = a.adrfam
    if a.trsvcid:
        addr["trsvcid"] = a.trsvcid
    return addr


def _addr_args(p: argparse.ArgumentParser, tgt_flag: str = "-p") -> None:
    p.add_argument("-t", "--trtype", required=True, help="transport type (TCP)")
    p.add_argument("-a", "--traddr", required=True, help="transport address, e.g. 127.0.0.1 or ::1")
    p.add_argument(tgt_flag, "--tgt-name", help="target name")
    p.add_argument("-f", "--adrfam", help="address family: ipv4 or ipv6")
    p.add_argument("-s", "--trsvcid", help="service id: the TCP port")


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    def show(method: str, **params: Any) -> None:
        print_dict(call(method, params))

    p = sub.add_parser("nvmf_set_max_subsystems", help="Set the maximum number of subsystems (startup only)")
    p.add_argument("-x", "--max-subsystems", type=int, required=True, help="maximum number of subsystems")
    p.set_defaults(func=lambda a: call("nvmf_set_max_subsystems", {"max_subsystems": a.max_subsystems}))

    p = sub.add_parser("nvmf_set_config", help="Set target-wide options (startup only)")
    p.add_argument("-p", "--passthru-admin-cmds", dest="admin_cmd_passthru",
                   help="comma list of admin commands to pass through (unsupported: leave empty)")
    p.add_argument("-m", "--poll-groups-mask", help="CPU mask of the poll groups")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-d", "--discovery-filter", help="deprecated: match_any or transport,address,svcid")
    g.add_argument("--discovery-filters", type=lambda s: s.split(","),
                   help="comma list of transport, address, svcid")
    p.add_argument("--dup-host-policy", choices=["allow", "restrict_per_listener"])
    p.add_argument("--dhchap-digests", type=lambda s: s.split(","),
                   help="comma list of DH-HMAC-CHAP hashes the target allows (sha256,sha384,sha512)")
    p.add_argument("--dhchap-dhgroups", type=lambda s: s.split(","),
                   help="comma list of DH-HMAC-CHAP DH groups the target allows (null,ffdhe2048..ffdhe8192)")

    def set_config(a: argparse.Namespace) -> None:
        passthru = None
        if a.admin_cmd_passthru:
            passthru = {n: True for n in a.admin_cmd_passthru.split(",")}
        call("nvmf_set_config", {"admin_cmd_passthru": passthru, "poll_groups_mask": a.poll_groups_mask,
                                 "discovery_filter": a.discovery_filter,
                                 "discovery_filters": a.discovery_filters,
                                 "dup_host_policy": a.dup_host_policy,
                                 "dhchap_digests": a.dhchap_digests, "dhchap_dhgroups": a.dhchap_dhgroups})
    p.set_defaults(func=set_config)

    p = sub.add_parser("nvmf_create_transport", help="Create the NVMe-oF transport")
    p.add_argument("-t", "--trtype", required=True, help="transport type (TCP)")
    p.add_argument("-g", "--tgt-name", help="target name")
    p.add_argument("-q", "--max-queue-depth", type=int, help="max outstanding commands per queue")
    p.add_argument("-m", "--max-io-qpairs-per-ctrlr", type=int, help="max I/O queues per controller")
    p.add_argument("-c", "--in-capsule-data-size", type=int, help="in-capsule data size (bytes)")
    p.add_argument("-i", "--max-io-size", type=int, help="max I/O size (bytes)")
    p.add_argument("-u", "--io-unit-size", type=int, help="I/O unit size (bytes)")
    p.add_argument("-a", "--max-aq-depth", type=int, help="max admin queue depth")
    p.add_argument("-n", "--num-shared-buffers", type=int, help="number of shared data buffers")
    p.add_argument("-b", "--buf-cache-size", type=int, help="per-poll-group buffer cache size")
    p.add_argument("-z", "--zcopy", action="store_true", help="zero-copy (accepted; reads are zero-copy anyway)")
    p.add_argument("-o", "--c2h-success", action="store_false",
                   help="disable the C2H success optimization (a response capsule follows read data)")
    p.add_argument("-f", "--dif-insert-or-strip", action="store_true", help="DIF insert/strip (unsupported)")
    p.add_argument("-y", "--sock-priority", type=int, help="socket priority")
    p.add_argument("-l", "--acceptor-backlog", type=int, help="listen backlog")
    p.add_argument("-x", "--abort-timeout-sec", type=int, help="abort timeout (s)")
    p.add_argument("-e", "--control-msg-num", type=int, help="control messages per poll group")
    p.add_argument("--ack-timeout", type=int, help="ACK timeout (ms)")
    p.add_argument("--kas", type=int, help="keep-alive granularity (100 ms units)")
    p.add_argument("--min-kato", type=int, help="minimum keep-alive timeout (ms)")

    def create_transport(a: argparse.Namespace) -> None:
        params = {k: getattr(a, k) for k in _TRANSPORT_ARGS
                  if getattr(a, k) is not None and getattr(a, k) is not False}
        params["c2h_success"] = a.c2h_success
        call("nvmf_create_transport", params)
    p.set_defaults(func=create_transport)

    p = sub.add_parser("nvmf_get_transports", help="Show the transports")
    p.add_argument("--trtype", help="only this transport")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: show("nvmf_get_transports", trtype=a.trtype, tgt_name=a.tgt_name))

    p = sub.add_parser("nvmf_get_subsystems", help="Show the subsystems (or one)")
    p.add_argument("nqn", nargs="?", help="subsystem NQN")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: show("nvmf_get_subsystems", nqn=a.nqn, tgt_name=a.tgt_name))

    p = sub.add_parser("nvmf_create_subsystem", help="Create an NVMe-oF subsystem")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.add_argument("-s", "--serial-number", help="serial number (up to 20 ASCII characters)")
    p.add_argument("-d", "--model-number", help="model number (up to 40 ASCII characters)")
    p.add_argument("-a", "--allow-any-host", action="store_true", help="let any host connect")
    p.add_argument("-m", "--max-namespaces", type=int, help="maximum number of namespaces")
    p.add_argument("-r", "--ana-reporting", action="store_true", help="enable ANA reporting")
    p.add_argument("-i", "--min-cntlid", type=int, help="minimum controller ID")
    p.add_argument("-I", "--max-cntlid", type=int, help="maximum controller ID")
    p.set_defaults(func=lambda a: call("nvmf_create_subsystem", {
        "nqn": a.nqn, "tgt_name": a.tgt_name, "serial_number": a.serial_number,
        "model_number": a.model_number, "allow_any_host": a.allow_any_host or None,
        "max_namespaces": a.max_namespaces, "ana_reporting": a.ana_reporting or None,
        "min_cntlid": a.min_cntlid, "max_cntlid": a.max_cntlid}))

    p = sub.add_parser("nvmf_delete_subsystem", help="Delete a subsystem")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: call("nvmf_delete_subsystem", {"nqn": a.nqn, "tgt_name": a.tgt_name}))

    for name, hlp in (("nvmf_subsystem_add_listener", "Add a listener to a subsystem"),
                      ("nvmf_subsystem_remove_listener", "Remove a listener from a subsystem")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("nqn", help="subsystem NQN ('discovery' for the discovery subsystem)")
        _addr_args(p)
        if name.endswith("add_listener"):
            p.add_argument("-k", "--secure-channel", action="store_true", help="TLS with a PSK only (hosts need nvmf_subsystem_add_host --psk)")
            p.add_argument("-n", "--ana-state", choices=ANA_STATES, help="initial ANA state")

            def add_listener(a: argparse.Namespace) -> None:
                call("nvmf_subsystem_add_listener", {
                    "nqn": _nqn(a.nqn), "listen_address": _address(a), "tgt_name": a.tgt_name,
                    "secure_channel": a.secure_channel or None, "ana_state": a.ana_state})
            p.set_defaults(func=add_listener)
        else:
            p.set_defaults(func=lambda a: call("nvmf_subsystem_remove_listener", {
                "nqn": _nqn(a.nqn), "listen_address": _address(a), "tgt_name": a.tgt_name}))

    p = sub.add_parser("nvmf_subsystem_listener_set_ana_state", help="Set the ANA state of a listener")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("-n", "--ana-state", choices=ANA_STATES, required=True, help="ANA state")
    _addr_args(p)
    p.add_argument("-g", "--anagrpid", type=int, help="ANA group ID")
    p.set_defaults(func=lambda a: call("nvmf_subsystem_listener_set_ana_state", {
        "nqn": a.nqn, "ana_state": a.ana_state, "listen_address": _address(a),
        "tgt_name": a.tgt_name, "anagrpid": a.anagrpid}))

    p = sub.add_parser("nvmf_subsystem_get_listeners", help="Show the listeners of a subsystem")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: show("nvmf_subsystem_get_listeners", nqn=_nqn(a.nqn), tgt_name=a.tgt_name))

    for name in ("nvmf_discovery_add_referral", "nvmf_discovery_remove_referral"):
        p = sub.add_parser(name, help=("Add" if "add" in name else "Remove") + " a discovery referral")
        _addr_args(p)
        if "add" in name:
            p.add_argument("-k", "--secure-channel", action="store_true", help="the referral needs TLS")
        p.add_argument("-n", "--subnqn", help="subsystem NQN of the referral")
        p.set_defaults(func=lambda a, name=name: call(name, {
            "address": _address(a), "tgt_name": a.tgt_name, "subnqn": a.subnqn,
            "secure_channel": getattr(a, "secure_channel", False) or None}))

    p = sub.add_parser("nvmf_discovery_get_referrals", help="Show the discovery referrals")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: show("nvmf_discovery_get_referrals", tgt_name=a.tgt_name))

    p = sub.add_parser("nvmf_subsystem_add_ns", help="Add a bdev as a namespace")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("bdev_name", help="bdev to export")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.add_argument("-n", "--nsid", type=int, help="namespace ID (default: lowest free)")
    p.add_argument("-g", "--nguid", help="16-byte NGUID in hexadecimal")
    p.add_argument("-e", "--eui64", help="8-byte EUI-64 in hexadecimal")
    p.add_argument("-u", "--uuid", help="namespace UUID (default: the bdev's)")
    p.add_argument("-a", "--anagrpid", type=int, help="ANA group ID (default: the NSID)")
    p.add_argument("-p", "--ptpl-file", help="file that keeps the reservations across restarts (PTPL)")
    p.add_argument("--no-auto-visible", action="store_true",
                   help="hide the namespace from every host until nvmf_ns_add_host shows it to one")

    def add_ns(a: argparse.Namespace) -> None:
        ns = {"bdev_name": a.bdev_name, "nsid": a.nsid, "nguid": a.nguid, "eui64": a.eui64,
              "uuid": a.uuid, "anagrpid": a.anagrpid, "ptpl_file": a.ptpl_file,
              "no_auto_visible": a.no_auto_visible or None}
        print_dict(call("nvmf_subsystem_add_ns", {
            "nqn": a.nqn, "tgt_name": a.tgt_name,
            "namespace": {k: v for k, v in ns.items() if v is not None}}))
    p.set_defaults(func=add_ns)

    p = sub.add_parser("nvmf_subsystem_set_ns_ana_group", help="Move a namespace to another ANA group")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("nsid", type=int, help="namespace ID")
    p.add_argument("anagrpid", type=int, help="ANA group ID (1..max_namespaces)")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: call("nvmf_subsystem_set_ns_ana_group", {
        "nqn": a.nqn, "nsid": a.nsid, "anagrpid": a.anagrpid, "tgt_name": a.tgt_name}))

    p = sub.add_parser("nvmf_subsystem_remove_ns", help="Remove a namespace")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("nsid", type=int, help="namespace ID")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: call("nvmf_subsystem_remove_ns", {"nqn": a.nqn, "nsid": a.nsid,
                                                                    "tgt_name": a.tgt_name}))

    p = sub.add_parser("nvmf_subsystem_remove_host", help="Disallow a host NQN")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("host", help="host NQN")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: call("nvmf_subsystem_remove_host", {"nqn": a.nqn, "host": a.host,
                                                                      "tgt_name": a.tgt_name}))

    for name, hlp in (("nvmf_subsystem_add_host", "Allow a host NQN (with DH-HMAC-CHAP keys: it must authenticate)"),
                      ("nvmf_subsystem_set_keys", "Set or rotate a host's DH-HMAC-CHAP keys (none: no authentication)")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("nqn", help="subsystem NQN")
        p.add_argument("host", help="host NQN")
        p.add_argument("-t", "--tgt-name", help="target name")
        if name == "nvmf_subsystem_add_host":
            p.add_argument("--psk", help="TLS PSK: a keyring key name or a PSK file path (NVMeTLSkey-1:...)")
        p.add_argument("--dhchap-key", help="keyring key holding the host's DHHC-1 secret")
        p.add_argument("--dhchap-ctrlr-key", help="keyring key holding the controller's DHHC-1 secret "
                                                  "(bidirectional authentication)")
        p.set_defaults(func=lambda a, name=name: call(name, {
            "nqn": a.nqn, "host": a.host, "tgt_name": a.tgt_name, "psk": getattr(a, "psk", None),
            "dhchap_key": a.dhchap_key, "dhchap_ctrlr_key": a.dhchap_ctrlr_key}))

    p = sub.add_parser("nvmf_subsystem_allow_any_host", help="Let any host connect (or only the listed ones)")
    p.add_argument("nqn", help="subsystem NQN")
    p.add_argument("--allow-any-host", action=argparse.BooleanOptionalAction, default=True,
                   help="allow any host (--no-allow-any-host: only the listed hosts)")
    p.add_argument("-e", "--enable", dest="allow_any_host", action="store_true", help="same as --allow-any-host")
    p.add_argument("-d", "--disable", dest="allow_any_host", action="store_false",
                   help="same as --no-allow-any-host")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: call("nvmf_subsystem_allow_any_host", {
        "nqn": a.nqn, "allow_any_host": a.allow_any_host, "tgt_name": a.tgt_name}))

    for name in ("nvmf_subsystem_get_controllers", "nvmf_subsystem_get_qpairs"):
        p = sub.add_parser(name, help="Show the " + name.rsplit("_", 1)[1] + " of a subsystem")
        p.add_argument("nqn", help="subsystem NQN")
        p.add_argument("-t", "--tgt-name", help="target name")
        p.set_defaults(func=lambda a, name=name: show(name, nqn=a.nqn, tgt_name=a.tgt_name))

    for name, hlp in (("nvmf_ns_add_host", "Make a no_auto_visible namespace visible to a host"),
                      ("nvmf_ns_remove_host", "Hide a no_auto_visible namespace from a host")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("nqn", help="subsystem NQN")
        p.add_argument("nsid", type=int, help="namespace ID")
        p.add_argument("host", help="host NQN")
        p.add_argument("-t", "--tgt-name", help="target name")
        p.set_defaults(func=lambda a, name=name: call(name, {"nqn": a.nqn, "nsid": a.nsid, "host": a.host,
                                                             "tgt_name": a.tgt_name}))

    p = sub.add_parser("nvmf_create_target", help="Create another NVMe-oF target (select it with -t/tgt_name)")
    p.add_argument("-n", "--name", required=True, help="target name")
    p.add_argument("-s", "--max-subsystems", type=int, help="maximum number of subsystems")
    p.set_defaults(func=lambda a: print_json(call("nvmf_create_target", {
        "name": a.name, "max_subsystems": a.max_subsystems})))

    p = sub.add_parser("nvmf_delete_target", help="Delete a target made with nvmf_create_target")
    p.add_argument("-n", "--name", required=True, help="target name")
    p.set_defaults(func=lambda a: call("nvmf_delete_target", {"name": a.name}))

    p = sub.add_parser("nvmf_get_targets", help="List the NVMe-oF targets")
    p.set_defaults(func=lambda a: print_dict(call("nvmf_get_targets")))

    p = sub.add_parser("nvmf_set_crdt", help="Set the Command Retry Delay Times (100 ms units; startup only)")
    p.add_argument("-t1", "--crdt1", type=int, help="Command Retry Delay Time 1")
    p.add_argument("-t2", "--crdt2", type=int, help="Command Retry Delay Time 2")
    p.add_argument("-t3", "--crdt3", type=int, help="Command Retry Delay Time 3")
    p.set_defaults(func=lambda a: call("nvmf_set_crdt", {"crdt1": a.crdt1, "crdt2": a.crdt2, "crdt3": a.crdt3}))

    p = sub.add_parser("nvmf_get_stats", help="Show NVMe-oF statistics")
    p.add_argument("-t", "--tgt-name", help="target name")
    p.set_defaults(func=lambda a: show("nvmf_get_stats", tgt_name=a.tgt_name))
