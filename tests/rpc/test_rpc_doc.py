"""docs/rpc.md is generated from the registry and must be regenerated when methods change."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rpc_doc_is_up_to_date() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-rpc-doc.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + " (run scripts/gen-rpc-doc.py and commit docs/rpc.md)"
