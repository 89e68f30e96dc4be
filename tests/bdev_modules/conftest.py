"""Fixtures for the module tests: reuse tests/bdev's reactor harness and Env."""
from __future__ import annotations

from tests.bdev.conftest import Env, env  # noqa: F401
