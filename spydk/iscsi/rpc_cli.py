"""`spydk rpc` commands of the iSCSI target, with rpc.py's arguments.

List arguments are single words split on spaces, as in rpc.py:
``iscsi_create_target_node disk1 "Data Disk1" "Malloc0:0 Malloc1:1" "1:1" 64 -d``.
"""
from __future__ import annotations

import argparse
from typing import Any

from spydk.rpc.cli import GLOBAL_DESTS, Call, add_simple, print_dict


def _words(s: str) -> list[str]:
    return s.split()


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    out = []
    for w in text.split():
        a, sep, b = w.rpartition(":")
        if not sep or not a or not b:
            raise argparse.ArgumentTypeError(f"{what} {w!r}: expected A:B")
        out.append((a, b))
    return out


def _pg_ig_maps(text: str) -> list[dict[str, int]]:
    try:
        return [{"pg_tag": int(a), "ig_tag": int(b)} for a, b in _pairs(text, "PG-IG map")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"PG-IG maps {text!r}: expected PG:IG integers") from None


def _luns(text: str) -> list[dict[str, Any]]:
    try:
        return [{"bdev_name": b, "lun_id": int(i)} for b, i in _pairs(text, "LUN")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"LUNs {text!r}: expected BDEV:ID") from None


def _portals(text: str) -> list[dict[str, str]]:
    out = []
    for host, port in _pairs(text, "portal"):
        out.append({"host": host, "port": port.split("@", 1)[0]})
    return out


def _secrets(text: str) -> list[dict[str, str]]:
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        d = {}
        for w in item.split():
            k, sep, v = w.partition(":")
            if not sep or k not in ("user", "secret", "muser", "msecret"):
                raise argparse.ArgumentTypeError(f"secret {item!r}: expected user:U secret:S "
                                                 "[muser:MU msecret:MS]")
            d[k] = v
        out.append(d)
    return out


def _chap_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-g", "--chap-group", type=int, help=f"auth group tag for {what}")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-d", "--disable-chap", action="store_true", help=f"no CHAP for {what}")
    g.add_argument("-r", "--require-chap", action="store_true", help=f"require CHAP for {what}")
    p.add_argument("-m", "--mutual-chap", action="store_true", help=f"mutual CHAP for {what}")


def _chap_params(a: argparse.Namespace) -> dict[str, Any]:
    return {"chap_group": a.chap_group, "disable_chap": a.disable_chap or None,
            "require_chap": a.require_chap or None, "mutual_chap": a.mutual_chap or None}


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    _options(sub, call)
    _auth(sub, call)
    _groups(sub, call)
    _nodes(sub, call)
    add_simple(sub, call, "iscsi_get_connections", "List iSCSI connections")
    add_simple(sub, call, "iscsi_get_stats", "iSCSI connection counts by state")
    add_simple(sub, call, "scsi_get_devices", "List SCSI devices")


def _options(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("iscsi_set_options", help="Set iSCSI target options (before framework_start_init)")
    p.add_argument("-f", "--auth-file", help="CHAP secret file (kept for compatibility)")
    p.add_argument("-b", "--node-base", help="prefix of target node names")
    p.add_argument("-o", "--nop-timeout", type=int, help="seconds to wait for a NOP-In answer")
    p.add_argument("-n", "--nop-in-interval", type=int, help="idle seconds before a NOP-In")
    _chap_flags(p, "discovery sessions")
    for short, name, help_ in (("-a", "max-sessions", "maximum sessions"),
                               ("-q", "max-queue-depth", "maximum queue depth per session"),
                               ("-c", "max-connections-per-session", "MaxConnections offered"),
                               ("-w", "default-time2wait", "DefaultTime2Wait offered"),
                               ("-v", "default-time2retain", "DefaultTime2Retain offered"),
                               ("-s", "first-burst-length", "FirstBurstLength offered"),
                               ("-l", "error-recovery-level", "ErrorRecoveryLevel offered"),
                               ("-x", "max-large-datain-per-connection", "split reads in flight"),
                               ("-k", "max-r2t-per-connection", "R2Ts in flight per connection"),
                               ("-u", "pdu-pool-size", "PDU pool size"),
                               ("-j", "immediate-data-pool-size", "immediate data buffers"),
                               ("-z", "data-out-pool-size", "Data-Out buffers")):
        p.add_argument(short, "--" + name, type=int, help=help_)
    p.add_argument("-i", "--immediate-data", action="store_true", help="offer ImmediateData=Yes")
    p.add_argument("-p", "--allow-duplicated-isid", action="store_true", help="allow duplicated ISIDs")

    def set_options(a: argparse.Namespace) -> None:
        params = {k: v for k, v in vars(a).items() if k not in GLOBAL_DESTS}
        for flag in ("disable_chap", "require_chap", "mutual_chap", "immediate_data",
                     "allow_duplicated_isid"):
            params[flag] = params[flag] or None
        call("iscsi_set_options", params)
    p.set_defaults(func=set_options)

    p = sub.add_parser("iscsi_set_discovery_auth", help="CHAP settings for discovery sessions")
    _chap_flags(p, "discovery sessions")
    p.set_defaults(func=lambda a: call("iscsi_set_discovery_auth", _chap_params(a)))
    add_simple(sub, call, "iscsi_get_options", "Show iSCSI target options")


def _auth(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("iscsi_create_auth_group", help="Create a CHAP auth group")
    p.add_argument("tag", type=int, help="auth group tag (> 0)")
    p.add_argument("-c", "--secrets", type=_secrets,
                   help="comma-separated secrets, each 'user:U secret:S [muser:MU msecret:MS]'")
    p.set_defaults(func=lambda a: call("iscsi_create_auth_group", {"tag": a.tag, "secrets": a.secrets}))

    p = sub.add_parser("iscsi_delete_auth_group", help="Delete a CHAP auth group")
    p.add_argument("tag", type=int, help="auth group tag")
    p.set_defaults(func=lambda a: call("iscsi_delete_auth_group", {"tag": a.tag}))

    p = sub.add_parser("iscsi_auth_group_add_secret", help="Add a secret to an auth group")
    p.add_argument("tag", type=int, help="auth group tag")
    p.add_argument("-u", "--user", required=True, help="CHAP user name")
    p.add_argument("-s", "--secret", required=True, help="CHAP secret")
    p.add_argument("-m", "--muser", help="mutual CHAP user name")
    p.add_argument("-r", "--msecret", help="mutual CHAP secret")
    p.set_defaults(func=lambda a: call("iscsi_auth_group_add_secret", {
        "tag": a.tag, "user": a.user, "secret": a.secret, "muser": a.muser, "msecret": a.msecret}))

    p = sub.add_parser("iscsi_auth_group_remove_secret", help="Remove a secret from an auth group")
    p.add_argument("tag", type=int, help="auth group tag")
    p.add_argument("-u", "--user", required=True, help="CHAP user name")
    p.set_defaults(func=lambda a: call("iscsi_auth_group_remove_secret", {"tag": a.tag, "user": a.user}))
    add_simple(sub, call, "iscsi_get_auth_groups", "List CHAP auth groups")


def _groups(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("iscsi_create_portal_group", help="Create a portal group")
    p.add_argument("tag", type=int, help="portal group tag (> 0)")
    p.add_argument("portals", type=_portals, help="space-separated HOST:PORT list, e.g. '127.0.0.1:3260 [::1]:3260'")
    p.add_argument("-p", "--private", action="store_true", help="never advertise in SendTargets")
    p.add_argument("-w", "--wait", action="store_true", help="listen only after iscsi_start_portal_group")
    p.set_defaults(func=lambda a: call("iscsi_create_portal_group", {
        "tag": a.tag, "portals": a.portals, "private": a.private or None, "wait": a.wait or None}))

    p = sub.add_parser("iscsi_start_portal_group", help="Start listening on a portal group")
    p.add_argument("tag", type=int, help="portal group tag")
    p.set_defaults(func=lambda a: call("iscsi_start_portal_group", {"tag": a.tag}))

    p = sub.add_parser("iscsi_delete_portal_group", help="Delete a portal group")
    p.add_argument("tag", type=int, help="portal group tag")
    p.set_defaults(func=lambda a: call("iscsi_delete_portal_group", {"tag": a.tag}))

    p = sub.add_parser("iscsi_portal_group_set_auth", help="Discovery CHAP settings of a portal group")
    p.add_argument("tag", type=int, help="portal group tag")
    _chap_flags(p, "discovery through this portal group")
    p.set_defaults(func=lambda a: call("iscsi_portal_group_set_auth", {"tag": a.tag, **_chap_params(a)}))
    add_simple(sub, call, "iscsi_get_portal_groups", "List portal groups")

    p = sub.add_parser("iscsi_create_initiator_group", help="Create an initiator group")
    p.add_argument("tag", type=int, help="initiator group tag (> 0)")
    p.add_argument("initiators", type=_words, help="space-separated names, ANY, or !NAME to deny")
    p.add_argument("netmasks", type=_words, help="space-separated networks or ANY")
    p.set_defaults(func=lambda a: call("iscsi_create_initiator_group", {
        "tag": a.tag, "initiators": a.initiators, "netmasks": a.netmasks}))

    for name, verb in (("iscsi_initiator_group_add_initiators", "Add"),
                       ("iscsi_initiator_group_remove_initiators", "Remove")):
        p = sub.add_parser(name, help=f"{verb} initiators/netmasks of an initiator group")
        p.add_argument("tag", type=int, help="initiator group tag")
        p.add_argument("-n", dest="initiators", type=_words, help="space-separated initiator names")
        p.add_argument("-m", dest="netmasks", type=_words, help="space-separated netmasks")
        p.set_defaults(func=lambda a, name=name: call(name, {
            "tag": a.tag, "initiators": a.initiators, "netmasks": a.netmasks}))

    p = sub.add_parser("iscsi_delete_initiator_group", help="Delete an initiator group")
    p.add_argument("tag", type=int, help="initiator group tag")
    p.set_defaults(func=lambda a: call("iscsi_delete_initiator_group", {"tag": a.tag}))
    add_simple(sub, call, "iscsi_get_initiator_groups", "List initiator groups")


def _nodes(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("iscsi_create_target_node", help="Create a target node")
    p.add_argument("name", help="target name (short names get the node base)")
    p.add_argument("alias_name", help="target alias")
    p.add_argument("luns", type=_luns, help="space-separated BDEV:LUN_ID list, e.g. 'Malloc0:0 Malloc1:1'")
    p.add_argument("pg_ig_maps", type=_pg_ig_maps, help="space-separated PG:IG list, e.g. '1:1 2:2'")
    p.add_argument("queue_depth", type=int, help="queue depth")
    _chap_flags(p, "this target node")
    p.add_argument("-H", "--header-digest", action="store_true", help="require header digests")
    p.add_argument("-D", "--data-digest", action="store_true", help="require data digests")
    p.set_defaults(func=lambda a: call("iscsi_create_target_node", {
        "name": a.name, "alias_name": a.alias_name, "luns": a.luns, "pg_ig_maps": a.pg_ig_maps,
        "queue_depth": a.queue_depth, **_chap_params(a), "header_digest": a.header_digest or None,
        "data_digest": a.data_digest or None}))

    p = sub.add_parser("iscsi_delete_target_node", help="Delete a target node")
    p.add_argument("target_node_name", help="target name")
    p.set_defaults(func=lambda a: call("iscsi_delete_target_node", {"name": a.target_node_name}))

    p = sub.add_parser("iscsi_target_node_add_lun", help="Add a bdev as a LUN of a target node")
    p.add_argument("name", help="target name")
    p.add_argument("bdev_name", help="bdev name")
    p.add_argument("-i", dest="lun_id", type=int, help="LUN id (default: the lowest free)")
    p.set_defaults(func=lambda a: call("iscsi_target_node_add_lun", {
        "name": a.name, "bdev_name": a.bdev_name, "lun_id": a.lun_id}))

    p = sub.add_parser("iscsi_target_node_set_auth", help="CHAP settings of a target node")
    p.add_argument("name", help="target name")
    _chap_flags(p, "this target node")
    p.set_defaults(func=lambda a: call("iscsi_target_node_set_auth", {"name": a.name, **_chap_params(a)}))

    for name, verb in (("iscsi_target_node_add_pg_ig_maps", "Add"),
                       ("iscsi_target_node_remove_pg_ig_maps", "Remove")):
        p = sub.add_parser(name, help=f"{verb} PG-IG maps of a target node")
        p.add_argument("name", help="target name")
        p.add_argument("pg_ig_maps", type=_pg_ig_maps, help="space-separated PG:IG list")
        p.set_defaults(func=lambda a, name=name: call(name, {"name": a.name, "pg_ig_maps": a.pg_ig_maps}))
    p = sub.add_parser("iscsi_target_node_request_logout", help="Ask a node's initiators to log out")
    p.add_argument("name", help="target name")
    p.add_argument("-t", "--pg-tag", type=int, help="only connections through this portal group")
    p.set_defaults(func=lambda a: call("iscsi_target_node_request_logout", {"name": a.name, "pg_tag": a.pg_tag}))

    p = sub.add_parser("iscsi_enable_histogram", help="Start or stop a node's latency histogram")
    p.add_argument("--histogram", dest="enable", action=argparse.BooleanOptionalAction, default=True,
                   help="enable (default) or --no-histogram to disable")
    p.add_argument("name", help="target name")
    p.set_defaults(func=lambda a: call("iscsi_enable_histogram", {"name": a.name, "enable": a.enable}))

    p = sub.add_parser("iscsi_get_histogram", help="A node's command latency histogram")
    p.add_argument("name", help="target name")
    p.set_defaults(func=lambda a: print_dict(call("iscsi_get_histogram", {"name": a.name})))

    p = sub.add_parser("iscsi_get_target_nodes", help="List target nodes")
    p.set_defaults(func=lambda a: print_dict(call("iscsi_get_target_nodes")))
