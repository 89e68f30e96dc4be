"""`spydk rpc bdev_nvme_*`: rpc.py's flags and positional arguments for the bdev_nvme RPCs."""
from __future__ import annotations

import argparse
from typing import Any

from spydk.rpc.cli import Call, print_array, print_dict


def _bool(v: bool) -> bool | None:
    return True if v else None


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("bdev_nvme_set_options", help="Set bdev_nvme options")
    p.add_argument("-a", "--action-on-timeout", help="none, reset or abort")
    p.add_argument("-t", "--timeout-us", type=int)
    p.add_argument("--timeout-admin-us", type=int)
    p.add_argument("-k", "--keep-alive-timeout-ms", type=int)
    p.add_argument("--arbitration-burst", type=int)
    p.add_argument("--low-priority-weight", type=int)
    p.add_argument("--medium-priority-weight", type=int)
    p.add_argument("--high-priority-weight", type=int)
    p.add_argument("-p", "--nvme-adminq-poll-period-us", type=int)
    p.add_argument("-i", "--nvme-ioq-poll-period-us", type=int)
    p.add_argument("-s", "--io-queue-requests", type=int)
    p.add_argument("-d", "--disable-delay-cmd-submit", action="store_true")
    p.add_argument("-c", "--transport-retry-count", type=int)
    p.add_argument("-r", "--bdev-retry-count", type=int)
    p.add_argument("-e", "--transport-ack-timeout", type=int)
    p.add_argument("-l", "--ctrlr-loss-timeout-sec", type=int)
    p.add_argument("-o", "--reconnect-delay-sec", type=int)
    p.add_argument("-u", "--fast-io-fail-timeout-sec", type=int)
    p.add_argument("-f", "--disable-auto-failback", action="store_true")
    p.add_argument("--generate-uuids", action="store_true")
    p.add_argument("--io-path-stat", action="store_true")

    def set_options(a: Any) -> None:
        print_dict(call("bdev_nvme_set_options", {
            "action_on_timeout": a.action_on_timeout, "timeout_us": a.timeout_us,
            "timeout_admin_us": a.timeout_admin_us, "keep_alive_timeout_ms": a.keep_alive_timeout_ms,
            "arbitration_burst": a.arbitration_burst, "low_priority_weight": a.low_priority_weight,
            "medium_priority_weight": a.medium_priority_weight,
            "high_priority_weight": a.high_priority_weight,
            "nvme_adminq_poll_period_us": a.nvme_adminq_poll_period_us,
            "nvme_ioq_poll_period_us": a.nvme_ioq_poll_period_us,
            "io_queue_requests": a.io_queue_requests,
            "delay_cmd_submit": False if a.disable_delay_cmd_submit else None,
            "transport_retry_count": a.transport_retry_count, "bdev_retry_count": a.bdev_retry_count,
            "transport_ack_timeout": a.transport_ack_timeout,
            "ctrlr_loss_timeout_sec": a.ctrlr_loss_timeout_sec,
            "reconnect_delay_sec": a.reconnect_delay_sec,
            "fast_io_fail_timeout_sec": a.fast_io_fail_timeout_sec,
            "disable_auto_failback": _bool(a.disable_auto_failback),
            "generate_uuids": _bool(a.generate_uuids), "io_path_stat": _bool(a.io_path_stat)}))
    p.set_defaults(func=set_options)

    p = sub.add_parser("bdev_nvme_attach_controller", help="Add bdevs with nvme backend")
    p.add_argument("-b", "--name", required=True, help="controller name, prefix of the bdev names")
    p.add_argument("-t", "--trtype", required=True, help="transport type, e.g. tcp")
    p.add_argument("-a", "--traddr", required=True, help="transport address, e.g. 127.0.0.1")
    p.add_argument("-f", "--adrfam", help="ipv4 or ipv6")
    p.add_argument("-s", "--trsvcid", help="transport service id (TCP port)")
    p.add_argument("-p", "--priority")
    p.add_argument("-n", "--subnqn", help="subsystem NQN")
    p.add_argument("-q", "--hostnqn", help="host NQN")
    p.add_argument("-i", "--hostaddr")
    p.add_argument("-c", "--hostsvcid")
    p.add_argument("-r", "--prchk-reftag", action="store_true")
    p.add_argument("-g", "--prchk-guard", action="store_true")
    p.add_argument("-e", "--hdgst", action="store_true", help="enable TCP header digest")
    p.add_argument("-d", "--ddgst", action="store_true", help="enable TCP data digest")
    p.add_argument("--fabrics-timeout", type=int, help="Fabrics connect timeout in microseconds")
    p.add_argument("-x", "--multipath", help="disable, failover or multipath")
    p.add_argument("--num-io-queues", type=int)
    p.add_argument("-l", "--ctrlr-loss-timeout-sec", type=int)
    p.add_argument("-o", "--reconnect-delay-sec", type=int)
    p.add_argument("-u", "--fast-io-fail-timeout-sec", type=int)
    p.add_argument("-k", "--psk")
    p.add_argument("-m", "--max-bdevs", type=int)

    def attach(a: Any) -> None:
        print_array(call("bdev_nvme_attach_controller", {
            "name": a.name, "trtype": a.trtype, "traddr": a.traddr, "adrfam": a.adrfam,
            "trsvcid": a.trsvcid, "priority": a.priority, "subnqn": a.subnqn, "hostnqn": a.hostnqn,
            "hostaddr": a.hostaddr, "hostsvcid": a.hostsvcid, "prchk_reftag": _bool(a.prchk_reftag),
            "prchk_guard": _bool(a.prchk_guard), "hdgst": _bool(a.hdgst), "ddgst": _bool(a.ddgst),
            "fabrics_connect_timeout_us": a.fabrics_timeout, "multipath": a.multipath,
            "num_io_queues": a.num_io_queues, "ctrlr_loss_timeout_sec": a.ctrlr_loss_timeout_sec,
            "reconnect_delay_sec": a.reconnect_delay_sec,
            "fast_io_fail_timeout_sec": a.fast_io_fail_timeout_sec, "psk": a.psk,
            "max_bdevs": a.max_bdevs}))
    p.set_defaults(func=attach)

    p = sub.add_parser("bdev_nvme_get_controllers", help="Display current NVMe controllers list or required NVMe controller")
    p.add_argument("-n", "--name", help="name of the NVMe controller, e.g. Nvme0")
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_get_controllers", {"name": a.name})))

    p = sub.add_parser("bdev_nvme_detach_controller", help="Detach an NVMe controller and delete any associated bdevs")
    p.add_argument("name", help="controller name")
    p.add_argument("-t", "--trtype")
    p.add_argument("-a", "--traddr")
    p.add_argument("-f", "--adrfam")
    p.add_argument("-s", "--trsvcid")
    p.add_argument("-n", "--subnqn")
    p.add_argument("-i", "--hostaddr")
    p.add_argument("-c", "--hostsvcid")
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_detach_controller", {
        "name": a.name, "trtype": a.trtype, "traddr": a.traddr, "adrfam": a.adrfam,
        "trsvcid": a.trsvcid, "subnqn": a.subnqn, "hostaddr": a.hostaddr, "hostsvcid": a.hostsvcid})))

    p = sub.add_parser("bdev_nvme_reset_controller", help="Reset an NVMe controller")
    p.add_argument("name", help="controller name")
    p.add_argument("-c", "--cntlid", type=int)
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_reset_controller",
                                                  {"name": a.name, "cntlid": a.cntlid})))

    p = sub.add_parser("bdev_nvme_get_io_paths", help="Display active I/O paths")
    p.add_argument("-n", "--name", help="name of the NVMe bdev")
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_get_io_paths", {"name": a.name})))

    p = sub.add_parser("bdev_nvme_set_multipath_policy", help="Set multipath policy of the NVMe bdev")
    p.add_argument("-b", "--name", required=True, help="name of the NVMe bdev")
    p.add_argument("-p", "--policy", required=True, help="active_passive or active_active")
    p.add_argument("-s", "--selector", help="round_robin or queue_depth (active_active)")
    p.add_argument("-r", "--rr-min-io", type=int, help="I/Os per path before switching (round_robin)")
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_set_multipath_policy", {
        "name": a.name, "policy": a.policy, "selector": a.selector, "rr_min_io": a.rr_min_io})))

    p = sub.add_parser("bdev_nvme_start_discovery", help="Start automatic discovery")
    p.add_argument("-b", "--name", required=True, help="name of the discovery service and prefix of controller names")
    p.add_argument("-t", "--trtype", required=True)
    p.add_argument("-a", "--traddr", required=True)
    p.add_argument("-f", "--adrfam")
    p.add_argument("-s", "--trsvcid")
    p.add_argument("-q", "--hostnqn")
    p.add_argument("-w", "--wait-for-attach", action="store_true")
    p.add_argument("-T", "--attach-timeout-ms", type=int)
    p.add_argument("-l", "--ctrlr-loss-timeout-sec", type=int)
    p.add_argument("-o", "--reconnect-delay-sec", type=int)
    p.add_argument("-u", "--fast-io-fail-timeout-sec", type=int)
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_start_discovery", {
        "name": a.name, "trtype": a.trtype, "traddr": a.traddr, "adrfam": a.adrfam,
        "trsvcid": a.trsvcid, "hostnqn": a.hostnqn, "wait_for_attach": _bool(a.wait_for_attach),
        "attach_timeout_ms": a.attach_timeout_ms, "ctrlr_loss_timeout_sec": a.ctrlr_loss_timeout_sec,
        "reconnect_delay_sec": a.reconnect_delay_sec,
        "fast_io_fail_timeout_sec": a.fast_io_fail_timeout_sec})))

    p = sub.add_parser("bdev_nvme_stop_discovery", help="Stop automatic discovery")
    p.add_argument("-b", "--name", required=True)
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_stop_discovery", {"name": a.name})))

    p = sub.add_parser("bdev_nvme_get_discovery_info", help="Get information about the automatic discovery")
    p.set_defaults(func=lambda a: print_dict(call("bdev_nvme_get_discovery_info", {})))
