"""Threads, pollers, messages and io_channels: SPDK's concurrency model in one process.

    reactor = init_reactor(loop)
    t = reactor.create_thread("app_thread")
    t.send_msg(fn, arg)                      # runs fn(arg) on t, in order
    p = t.poller_register(fn, arg, period_us=1000, name="my_poller")
    io_device_register(dev, create_cb, destroy_cb, "my_dev")
    ch = get_io_channel(dev)                 # from code running on a Thread
"""
from spydk.thread.io_channel import (
    ChannelIter,
    IoChannel,
    for_each_channel,
    get_io_channel,
    io_device_register,
    io_device_unregister,
    io_devices,
    is_io_device,
    put_io_channel,
)
from spydk.thread.reactor import TICK_RATE, Reactor, get_reactor, init_reactor, reactor_or_none
from spydk.thread.thread import (
    POLLER_MAX_FAILURES,
    Poller,
    PollerState,
    Thread,
    get_thread,
    set_thread,
)

__all__ = [
    "POLLER_MAX_FAILURES", "TICK_RATE", "ChannelIter", "IoChannel", "Poller", "PollerState", "Reactor", "Thread",
    "for_each_channel", "get_io_channel", "get_reactor", "get_thread", "init_reactor",
    "io_device_register", "io_device_unregister", "io_devices", "is_io_device",
    "put_io_channel", "reactor_or_none", "set_thread",
]
