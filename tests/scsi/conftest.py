from __future__ import annotations

import pytest

from .helpers import Harness


@pytest.fixture
def h() -> Harness:
    return Harness()
