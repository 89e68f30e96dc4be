"""Lower layers never import higher ones; modules never import each other.

``LAYERS`` below is the one list of the allowed directions (docs/architecture.md shows it as a
picture): a package may import itself and any package of a strictly lower rank, nothing else.
Every import statement counts, also inside functions and ``if TYPE_CHECKING:`` blocks: a
type-only import of a higher layer is still an upward dependency (pass a protocol down instead,
as spydk.rpc.AppContext does for the app).

A new layer (a package directly under spydk/) must be added here with its rank; the test fails
and says so until it is.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spydk

# rank: packages (or top-level modules) of spydk at that level. Same rank = siblings, which do
# not import each other.
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("log", "notify", "sysio"),            # base: logging, notifications, Linux I/O syscalls
    1: ("trace",),                            # trace points: thread, bdev, nvmf, iscsi record into it
    2: ("thread",),                           # reactor, threads, pollers, io_channels
    3: ("rpc",),                              # JSON-RPC registry, server, client, `spydk rpc`
    4: ("init",),                             # subsystem registry
    5: ("bdev", "keyring"),                   # the generic block device layer; named keys
    6: ("nvme", "scsi", "blob"),              # NVMe spec/codec/host driver; SCSI; blobstore
    7: ("lvol",),                             # logical volumes on a blobstore
    8: ("nvmf", "iscsi", "vhost", "nbd"),     # the protocol targets
    9: ("modules", "metrics"),                # pluggable modules (bdev modules, ...); Prometheus exporter
    10: ("apps",),                            # the applications (spydk tgt, bdevperf, ...)
    11: ("testing",),                         # the public test harness (starts apps)
}
RANK = {name: rank for rank, names in LAYERS.items() for name in names}
ROOT = Path(spydk.__file__).parent


def _layer_of(module: str) -> str:
    """'spydk.bdev.io' -> 'bdev'; 'spydk' itself -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_room(module: str) -> str | None:
    """'spydk.modules.bdev.malloc.rpc' -> 'spydk.modules.bdev.malloc' (None outside modules)."""
    parts = module.split(".")
    return ".".join(parts[:4]) if len(parts) >= 4 and parts[1] == "modules" else None


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "spydk" or (node.level and not node.module):
                # "from spydk import log" names submodules: check each
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
    return [(n, t) for n, t in out if t == "spydk" or t.startswith("spydk.")]


def _sources() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((path, ".".join(parts)))
    return out


def test_every_layer_has_a_rank() -> None:
    names = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    names |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    missing = sorted(names - set(RANK))
    assert not missing, (f"{missing} under spydk/ have no rank: add them to LAYERS in {__file__} "
                         "(and to the picture in docs/architecture.md)")


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for path, module in _sources():
        here = _layer_of(module)
        if here not in RANK:
            continue  # reported by test_every_layer_has_a_rank
        for lineno, target in _imports(path, module):
            there = _layer_of(target)
            if there in ("", here):
                room, other = _module_room(module), _module_room(target)
                if here == "modules" and other is not None and room != other:
                    bad.append(f"{path.relative_to(ROOT.parent)}:{lineno}: module {room} imports "
                               f"module {other} (modules are independent; share code through a layer)")
                continue
            if there not in RANK:
                continue
            if RANK[there] >= RANK[here]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{lineno}: {here} (rank {RANK[here]}) imports "
                           f"{target} ({there}, rank {RANK[there]})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, target, allowed", [
    ("bdev", "rpc", True), ("rpc", "apps", False), ("nvme", "scsi", False), ("apps", "nvmf", True),
])
def test_rank_order_reads_as_documented(source: str, target: str, allowed: bool) -> None:
    assert (RANK[target] < RANK[source]) is allowed
