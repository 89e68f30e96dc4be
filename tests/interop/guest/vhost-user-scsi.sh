#!/bin/bash
# vhost-user-scsi check: the guest was booted with the target's socket as a vhost-user-scsi
# controller with one target (LUN 0), so its disk is /dev/sda.
# Env: VHOST_MB      expected size in MiB (checked when set)
#      VHOST_VENDOR  expected INQUIRY vendor (checked when set)
. /etc/guest/lib.sh
DEV=/dev/sda
wait_for "$DEV" 15 || die "$DEV did not appear"
step "sg_inq $DEV"
sg_inq "$DEV" > /tmp/inq || die "sg_inq failed"
cat /tmp/inq
[ -z "$VHOST_VENDOR" ] || grep -q "Vendor identification: $VHOST_VENDOR" /tmp/inq || die "vendor is not $VHOST_VENDOR"
sg_readcap -l "$DEV" || die "sg_readcap failed"
sg_vpd -p bl "$DEV" || die "Block Limits VPD page"
sectors=$(cat /sys/block/sda/size)
[ -z "$VHOST_MB" ] || [ "$sectors" -eq $((VHOST_MB * 2048)) ] || die "size $sectors sectors, expected $VHOST_MB MiB"
fio_verify "$DEV" 16M
max=$(cat /sys/block/sda/queue/discard_max_bytes)
if [ "$max" -gt 0 ]; then
  blkdiscard -o $((40 << 20)) -l $((1 << 20)) "$DEV" || die "blkdiscard failed"
  echo "discard: 1 MiB at 40 MiB discarded (discard_max_bytes=$max)"
fi
echo "VHOST-USER-SCSI CHECK PASSED"
