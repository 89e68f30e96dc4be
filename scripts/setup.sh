#!/usr/bin/env bash
# One-time (idempotent) set-up on Debian 12.
#   scripts/setup.sh          what the target needs: scripts/debian-packages-target.txt, and a
#                             virtualenv in .venv with spydk installed in editable mode
#   scripts/setup.sh --test   also what the tests need: scripts/debian-packages.txt (QEMU, tgt,
#                             libiscsi, ...) and spydk's test extras
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

lists=scripts/debian-packages-target.txt
extras=""
case "${1:-}" in
    --test) lists="$lists scripts/debian-packages.txt"; extras="[test]" ;;
    "") ;;
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

# One package per line; '#' starts a comment, also after a name.
pkgs=$(cat $lists | sed -e 's/#.*//' | tr -s ' \t\n' ' ')
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# One stamp per flavour: the test extras are installed once on top of the target's set-up.
stamp=".venv/.spydk-installed${extras:+-test}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".${extras}"
    touch "$stamp"
fi
# An editable install compiles nothing ahead: write spydk's bytecode cache now (quick when it is
# current), so a target started under PYTHONDONTWRITEBYTECODE=1 does not compile every module at
# each start (~0.9 s of CPU; bench/startup.py --no-bytecode shows it).
.venv/bin/python -m compileall -q spydk >/dev/null
