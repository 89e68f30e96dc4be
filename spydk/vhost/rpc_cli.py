"""`spydk rpc` commands of the vhost target, with rpc.py's arguments."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, print_dict


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("vhost_create_blk_controller", help="serve a bdev as a vhost-user-blk device")
    p.add_argument("ctrlr", help="controller name (the socket's file name)")
    p.add_argument("dev_name", help="bdev name")
    p.add_argument("--cpumask", help="cpu mask of the controller")
    p.add_argument("-r", "--readonly", action="store_true", default=None, help="read-only device")
    p.add_argument("-p", "--packed_ring", action="store_true", default=None, help="packed ring")
    p.set_defaults(func=lambda a: call("vhost_create_blk_controller", {
        "ctrlr": a.ctrlr, "dev_name": a.dev_name, "cpumask": a.cpumask, "readonly": a.readonly,
        "packed_ring": a.packed_ring}))

    p = sub.add_parser("vhost_create_scsi_controller", help="create a vhost-user-scsi controller")
    p.add_argument("ctrlr", help="controller name (the socket's file name)")
    p.add_argument("--cpumask", help="cpu mask of the controller")
    p.add_argument("--delay", action="store_true", default=None,
                   help="create the controller without starting it (vhost_start_scsi_controller)")
    p.set_defaults(func=lambda a: call("vhost_create_scsi_controller", {
        "ctrlr": a.ctrlr, "cpumask": a.cpumask, "delay": a.delay}))

    p = sub.add_parser("vhost_start_scsi_controller", help="start a controller created with --delay")
    p.add_argument("ctrlr", help="controller name")
    p.set_defaults(func=lambda a: call("vhost_start_scsi_controller", {"ctrlr": a.ctrlr}))

    p = sub.add_parser("vhost_scsi_controller_add_target", help="add a SCSI target with one LUN (a bdev)")
    p.add_argument("ctrlr", help="controller name")
    p.add_argument("scsi_target_num", type=int, help="SCSI target number (-1: the first free one)")
    p.add_argument("bdev_name", help="bdev name")
    p.set_defaults(func=lambda a: print(call("vhost_scsi_controller_add_target", {
        "ctrlr": a.ctrlr, "scsi_target_num": a.scsi_target_num, "bdev_name": a.bdev_name})))

    p = sub.add_parser("vhost_scsi_controller_remove_target", help="remove a SCSI target")
    p.add_argument("ctrlr", help="controller name")
    p.add_argument("scsi_target_num", type=int, help="SCSI target number")
    p.set_defaults(func=lambda a: call("vhost_scsi_controller_remove_target", {
        "ctrlr": a.ctrlr, "scsi_target_num": a.scsi_target_num}))

    p = sub.add_parser("vhost_get_controllers", help="list vhost controllers")
    p.add_argument("-n", "--name", help="only this controller")
    p.set_defaults(func=lambda a: print_dict(call("vhost_get_controllers", {"name": a.name})))

    p = sub.add_parser("vhost_delete_controller", help="delete a vhost controller")
    p.add_argument("ctrlr", help="controller name")
    p.set_defaults(func=lambda a: call("vhost_delete_controller", {"ctrlr": a.ctrlr}))

    p = sub.add_parser("vhost_controller_set_coalescing", help="interrupt coalescing of a controller")
    p.add_argument("ctrlr", help="controller name")
    p.add_argument("delay_base_us", type=int, help="interrupt delay in microseconds (0: off)")
    p.add_argument("iops_threshold", type=int, help="IOPS above which interrupts are delayed")
    p.set_defaults(func=lambda a: call("vhost_controller_set_coalescing", {
        "ctrlr": a.ctrlr, "delay_base_us": a.delay_base_us, "iops_threshold": a.iops_threshold}))
