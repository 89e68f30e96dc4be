"""iSCSI (RFC 7143).

Protocol layer, sans-IO: ``spec`` (wire layouts), ``pdu`` (framing, digests), ``negotiation``
(text keys), ``chap`` (authentication), ``session`` (sessions, registry, TargetPolicy),
``conn`` (the target-side connection state machine).  The target/portal/RPC layer builds on
``conn.Connection`` and ``session.TargetPolicy``.
"""
