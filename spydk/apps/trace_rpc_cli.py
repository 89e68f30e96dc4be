"""`spydk rpc trace_*`: rpc.py's flags (names and hex masks are positional)."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_simple


def _hex(text: str) -> int:
    return int(text, 16)


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    for method, what in (("trace_enable_tpoint_group", "enable"), ("trace_disable_tpoint_group", "disable")):
        p = sub.add_parser(method, help=f"{what} every trace point of a group")
        p.add_argument("name", help='trace group name (bdev, nvmf_tcp, iscsi_conn, scsi, thread, nvmf_ctrlr) or "all"')
        p.set_defaults(func=lambda a, m=method: call(m, {"name": a.name}))
    for method, what in (("trace_set_tpoint_mask", "enable"), ("trace_clear_tpoint_mask", "disable")):
        p = sub.add_parser(method, help=f"{what} the trace points of a mask in one group")
        p.add_argument("name", help="trace group name")
        p.add_argument("tpoint_mask", type=_hex, help="hex bit mask of trace points in the group (0x3: the first two)")
        p.set_defaults(func=lambda a, m=method: call(m, {"name": a.name, "tpoint_mask": a.tpoint_mask}))
    add_simple(sub, call, "trace_get_tpoint_group_mask", "Show the trace group mask and each group's state")
    add_simple(sub, call, "trace_get_info", "Show the trace ring's path and the masks")
    add_simple(sub, call, "trace_clear", "Drop the records in the trace ring", None)
