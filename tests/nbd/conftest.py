"""The module tests' Env for the NBD server tests."""
from tests.bdev_modules.conftest import (
    _core_env,  # noqa: F401
    env,  # noqa: F401
)
