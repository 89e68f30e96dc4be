"""vhost-user target: bdevs served to virtual machines as virtio-blk and virtio-scsi devices.

Layers, bottom up: spec (structures), codec (message framing), memory (guest memory
table), virtqueue (split rings), session (the back end's protocol state machine, sans-IO),
controller (sockets, kicks and interrupts on the reactor), blk/scsi (the devices), target
+ rpc + subsystem (the app's controllers and SPDK's vhost_* RPCs). See docs/vhost.md.
"""
