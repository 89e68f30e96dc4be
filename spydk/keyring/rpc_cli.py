"""`spydk rpc` arguments for the keyring methods, as SPDK's rpc.py has them."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_simple, print_dict


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("keyring_file_add_key", help="Add a key kept in a file")
    p.add_argument("name", help="key name")
    p.add_argument("path", help="absolute path of the key file (mode 0600, owned by the target's user)")
    p.set_defaults(func=lambda a: call("keyring_file_add_key", {"name": a.name, "path": a.path}))

    p = sub.add_parser("keyring_file_remove_key", help="Remove a file key")
    p.add_argument("name", help="key name")
    p.set_defaults(func=lambda a: call("keyring_file_remove_key", {"name": a.name}))

    add_simple(sub, call, "keyring_get_keys", "List keys (names, modules, paths; never contents)", print_dict)
