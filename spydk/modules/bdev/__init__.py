"""Bdev modules (SPDK's module/bdev): each package is one module with its RPCs beside it.

    <name>/__init__.py   imports the module code and rpc.py, so importing it registers both
    <name>/<name>.py     the BdevModule and its Bdev (the interface is spydk.bdev.module)
    <name>/rpc.py        server-side RPC handlers (@rpc_method)
    <name>/rpc_cli.py    `spydk rpc` argument parsers: add_commands(sub, call)

A new package here is found without editing any list (see spydk.rpc.discovery).
"""
