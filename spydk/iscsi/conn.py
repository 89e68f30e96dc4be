"""Target-side iSCSI connection: login, Full Feature Phase, logout (RFC 7143), sans-IO.

One class, ``Connection``, made of one file per job: conn_core.py (events, states, input,
output, timers), login.py (the login phase), commands.py (SCSI commands, Data-Out, R2T,
Data-In), control.py (NOP, SNACK, task management, Text, Logout).

Driving it::

    conn = Connection(config, policy, registry, initiator_address="10.0.0.2:51000", now=t)
    buf = conn.get_buffer(n); ...; events = conn.buffer_updated(nread, now=t)
    for ev in events: ...            # ScsiCommandReady -> hand ev.task to the SCSI layer
    sock.sendmsg(conn.data_to_send())
    ...                              # SCSI layer done:
    sock.sendmsg(conn.complete_task(task))
    timer: conn.get_timer() -> deadline; conn.handle_timer(now) -> events

One way in: ``get_buffer``/``buffer_updated`` (asyncio.BufferedProtocol's pair), which return
the events the bytes caused; ``receive_data(bytes)`` is the same for callers holding bytes
(tests), and ``pending_events()`` returns events queued outside a receive (e.g. after a deferred
command ran). One way out: everything to send is queued and taken by ``data_to_send()``; the
calls that answer the SCSI layer (``complete_task``, ``task_management_done``,
``request_logout``) return ``data_to_send()`` for convenience.

Errors: peer protocol violations become Reject PDUs, login failure responses or a
``ConnectionFailed`` event (ErrorRecoveryLevel 0: the connection then ignores input; flush
``data_to_send()`` and close).  Misuse of this API raises ``LocalProtocolError``.

Buffers returned for sending reference fresh header bytes plus the SCSI layer's data views;
nothing is overwritten later, so a transport may queue them.
"""
from __future__ import annotations

from spydk.iscsi.commands import CommandPhase
from spydk.iscsi.conn_core import (
    ACCEPTS,
    DISCOVERY_ACCEPTS,
    LOGIN_TRANSITIONS,
    STAGE_OF,
    ConnectionFailed,
    ConnState,
    Event,
    LocalProtocolError,
    LoggedOut,
    LoginComplete,
    ScsiCommandReady,
    TargetConfig,
    TaskManagementRequest,
    WriteBufferPool,
)
from spydk.iscsi.control import ControlPhase
from spydk.iscsi.login import LoginPhase

__all__ = [
    "ACCEPTS", "DISCOVERY_ACCEPTS", "LOGIN_TRANSITIONS", "STAGE_OF", "ConnState", "Connection",
    "ConnectionFailed", "Event", "LocalProtocolError", "LoggedOut", "LoginComplete", "ScsiCommandReady",
    "TargetConfig", "TaskManagementRequest", "WriteBufferPool",
]


class Connection(LoginPhase, CommandPhase, ControlPhase):
    """One iSCSI connection, target side (see the module docstring)."""
