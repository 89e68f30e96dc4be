#!/usr/bin/env bash
# One-time (idempotent) set-up on Debian 12: system packages the tests need, and a
# virtualenv in .venv with spydk installed in editable mode plus its test extras.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# One package per line; '#' starts a comment, also after a name.
pkgs=$(sed -e 's/#.*//' scripts/debian-packages.txt | tr -s ' \t\n' ' ')
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
stamp=.venv/.spydk-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi
