"""Subsystems: registry, dependency order, config dump (SPDK's lib/init)."""
from spydk.init.subsystem import (
    Subsystem,
    all_subsystems,
    get_subsystem,
    register_subsystem,
    sorted_subsystems,
)

__all__ = ["Subsystem", "all_subsystems", "get_subsystem", "register_subsystem", "sorted_subsystems"]
