"""Random CDBs and data-out never raise and always complete once with a well-formed outcome."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.scsi.opcodes import COMMANDS
from spydk.scsi.spec import parse_sense
from spydk.scsi.task import ScsiStatus
from tests.scsi.memory_backend import MemoryBackend

from .helpers import I1, I2, Harness

KNOWN_OPS = sorted({c.opcode for c in COMMANDS})


def _check_outcome(h: Harness, task) -> None:  # type: ignore[no-untyped-def]
    assert h.completed.count(task) == 1
    assert task.status in (ScsiStatus.GOOD, ScsiStatus.CHECK_CONDITION,
                           ScsiStatus.RESERVATION_CONFLICT)
    if task.status == ScsiStatus.CHECK_CONDITION:
        key, _, _ = parse_sense(task.sense)
        assert 0 < key <= 0x0E
    else:
        assert task.sense == b""
    total = sum(len(v) for v in task.data_in)
    assert total == task.data_in_length


cdbs = st.one_of(
    st.binary(min_size=0, max_size=32),
    st.tuples(st.sampled_from(KNOWN_OPS), st.binary(min_size=0, max_size=31)).map(
        lambda t: bytes((t[0],)) + t[1]),
)


@settings(max_examples=400, deadline=None)
@given(cdbs, st.binary(max_size=2048), st.integers(0, 4096), st.sampled_from([I1, I2]),
       st.integers(0, 2))
def test_random_cdbs(cdb: bytes, data_out: bytes, tl: int, port: str, lun: int) -> None:
    h = Harness(MemoryBackend(num_blocks=64))
    task = h.submit(cdb, data_out, transfer_length=tl, port=port, lun=lun)
    _check_outcome(h, task)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(cdbs, st.binary(max_size=1100), st.sampled_from([I1, I2])),
                min_size=1, max_size=12))
def test_random_command_sequences(cmds: list[tuple[bytes, bytes, str]]) -> None:
    """State-changing commands (MODE SELECT, PROUT, RESERVE, START STOP ...) in sequence."""
    h = Harness(MemoryBackend(num_blocks=64), removable=True)
    for cdb, data_out, port in cmds:
        task = h.submit(cdb, data_out, transfer_length=max(len(data_out), 4096), port=port)
        _check_outcome(h, task)
