#!/bin/bash
# Guest smoke check: the initiator modules are loaded, the tools run, the network reaches
# only the host loopback, and the lib.sh helpers work on a plain QEMU virtio disk.
# Env: SMOKE_ECHO_PORT   a host port (on 127.0.0.1) that answers one line with SMOKE_TOKEN
#      SMOKE_TOKEN       the answer expected from it
#      SMOKE_CLOSED_PORT a host port nobody listens on (nvme discover must be refused)
#      SMOKE_DISK        a scratch disk (default /dev/vda; "none" to skip the disk checks)
. /etc/guest/lib.sh

step "kernel $(uname -r), modules"
for m in nvme_tcp nvme_fabrics nvme_core iscsi_tcp libiscsi scsi_transport_iscsi sd_mod sg \
         nbd ext4 virtio_blk virtio_net crc32c_generic; do
  [ -d "/sys/module/$m" ] || die "module $m is not loaded"
done
[ -c /dev/nvme-fabrics ] || die "/dev/nvme-fabrics missing"
modprobe nvme_tcp || die "modprobe nvme_tcp failed"
echo "modules OK: $(lsmod | wc -l) loaded"

step "tools"
nvme version | head -1 || die "nvme"
iscsiadm --version || die "iscsiadm"
iscsid --version || die "iscsid"
fio --version || die "fio"
sg_inq --version 2>&1 | head -1; command -v sg_readcap >/dev/null || die "sg3-utils"
mkfs.ext4 -V 2>&1 | head -1; command -v fsck.ext4 >/dev/null || die "e2fsprogs"
nbd-client --help 2>&1 | head -1; command -v nbd-client >/dev/null || die "nbd-client"
start_iscsid || die "iscsid did not start"

step "network"
ip -4 addr show eth0 | grep -q "inet $GUEST_IP/24" || die "eth0 has no $GUEST_IP"
ip route | grep -q '^default' && die "the guest must not have a default route"
ip -6 route 2>/dev/null | grep -q '^default' && die "the guest must not have an IPv6 default route"
ip -6 addr show dev eth0 2>/dev/null | grep -q 'scope global' && die "eth0 got a global IPv6 address"
if [ -n "$SMOKE_ECHO_PORT" ]; then
  got=$(echo "hello from $GUEST_IP" | nc -w 10 "$HOST_IP" "$SMOKE_ECHO_PORT")
  [ "$got" = "$SMOKE_TOKEN" ] || die "host echo on $HOST_IP:$SMOKE_ECHO_PORT answered '$got'"
  echo "host loopback reachable through $HOST_IP:$SMOKE_ECHO_PORT"
fi
if [ -n "$SMOKE_CLOSED_PORT" ]; then
  out=$(nvme discover -t tcp -a "$HOST_IP" -s "$SMOKE_CLOSED_PORT" 2>&1) && die "discover on a closed port succeeded"
  echo "$out" | grep -qi 'connection refused' || die "expected 'Connection refused', got: $out"
  ls /dev/nvme[0-9]* 2>/dev/null && die "a controller was left behind"
  echo "nvme discover on a closed port: refused, as expected"
fi

DISK=${SMOKE_DISK:-/dev/vda}
if [ "$DISK" != none ]; then
  step "helpers on $DISK"
  wait_for "$DISK" 10 || die "$DISK missing"
  pattern_check "$DISK" 4
  fio_verify "$DISK" 8M
  fs_check "$DISK"
fi
echo "SMOKE CHECK PASSED"
