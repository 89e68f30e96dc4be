"""Assertions shared by the interop tests."""
from __future__ import annotations

from .guest_run import GuestResult


def guest_passed(res: GuestResult, marker: str) -> None:
    """The guest script exited 0 and printed its success marker."""
    assert not res.timed_out, f"the guest timed out after {res.total_s:.0f} s"
    assert res.rc is not None, "the guest reported no exit status (boot failure? see its console)"
    fails = [ln for ln in res.console.splitlines() if ln.startswith("FAIL:")]
    assert res.rc == 0, f"the guest script exited {res.rc}: {fails}"
    assert marker in res.console, f"{marker!r} missing from the guest console"
