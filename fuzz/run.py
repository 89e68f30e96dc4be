"""Run one fuzz target with atheris (coverage-guided, libFuzzer), or replay inputs.

    python -m fuzz.run TARGET [libFuzzer flags...] [CORPUS_DIR...]
    python -m fuzz.run --replay TARGET FILE_OR_DIR...
    python -m fuzz.run TARGET -merge=1 fuzz/corpus/TARGET NEW_DIR...   (add what NEW_DIR covers more)

Run from the repository root (the targets use the in-memory pairs under tests/). New
inputs are written to the first corpus directory: give a scratch directory first and
fuzz/corpus/TARGET second to read the kept corpus without changing it.
"""
from __future__ import annotations

import os
import shlex
import sys


def _replay(name: str, paths: list[str]) -> int:
    from fuzz.targets import TARGETS, install_trap
    install_trap()
    fn = TARGETS[name]
    n = 0
    for p in paths:
        files = [os.path.join(p, f) for f in sorted(os.listdir(p))] if os.path.isdir(p) else [p]
        for f in files:
            with open(f, "rb") as fh:
                fn(fh.read())
            n += 1
    print(f"{name}: {n} inputs replayed")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--replay":
        return _replay(argv[2], argv[3:])
    if len(argv) < 2:
        print(__doc__)
        return 2
    name = argv[1]
    import atheris
    with atheris.instrument_imports(include=["spydk", "fuzz", "tests"]):
        from fuzz import targets
        targets.prepare(name)
    targets.install_trap()
    fn = targets.TARGETS[name]

    def one(data: bytes) -> None:
        fn(data)

    # libFuzzer runs its own program again for -merge=1 and -fork (through the shell, with
    # argv[0] first): make that program this target.
    me = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "fuzz.run", name))
    atheris.Setup([me, *argv[2:]], one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
