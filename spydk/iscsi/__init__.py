"""iSCSI target (RFC 7143; SPDK's lib/iscsi).

Protocol, sans-IO: ``spec`` (wire layouts), ``pdu`` (framing, digests), ``negotiation``
(text keys), ``chap`` (authentication), ``session`` (sessions, registry, TargetPolicy),
``conn`` (the target-side connection state machine).

Target model: ``iscsi_tgt`` (IscsiTarget: nodes, groups, options), ``target_node``,
``portal_group``, ``initiator_group``, ``auth``, ``policy``. ``socket_io`` puts connections on
sockets (asyncio listeners, one protocol per connection) and runs their SCSI tasks.
``rpc``/``rpc_cli`` are the iscsi_* RPCs and their `spydk rpc` commands; ``subsystem``
registers the "scsi" and "iscsi" subsystems.
"""
