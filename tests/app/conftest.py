"""Run targets with the test-only kv plugin."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, Any]:
    marker = tmp_path / "marker.txt"
    return {
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "SPYDK_PLUGINS": "kv_plugin",
        "SPYDK_TEST_MARKER": str(marker),
    }
