#!/bin/bash
# vhost-user-blk check: the guest was booted with the target's socket as its first
# vhost-user-blk device, so the target's disk is /dev/vda.
# Env: VHOST_DEV     the disk (default /dev/vda)
#      VHOST_MB      expected size in MiB (checked when set)
#      VHOST_MARKER  a line to write at byte offset 48 MiB at the end, for the host to find
#      FIO_SECONDS   4 KiB randread duration (default 0: skipped)
#      VHOST_DISCARD 1: the disk must offer discard, and discarded blocks must read back as
#                    zeroes (a target that punches holes or zeroes on unmap)
. /etc/guest/lib.sh
DEV=${VHOST_DEV:-/dev/vda}
wait_for "$DEV" 10 || die "$DEV did not appear"
b=${DEV#/dev/}
sectors=$(cat /sys/block/$b/size)
echo "disk $DEV: $sectors sectors of 512 B, queues: $(ls /sys/block/$b/mq | wc -l)"
[ -z "$VHOST_MB" ] || [ "$sectors" -eq $((VHOST_MB * 2048)) ] || die "size $sectors sectors, expected $VHOST_MB MiB"
pattern_check "$DEV" 8
fio_verify "$DEV" 16M
fio_randread "$DEV" "${FIO_SECONDS:-0}"
if [ "$VHOST_DISCARD" = 1 ]; then
  max=$(cat /sys/block/$b/queue/discard_max_bytes)
  [ "$max" -gt 0 ] || die "$DEV offers no discard (discard_max_bytes=$max)"
  dd if=/dev/urandom of=/tmp/rnd bs=1M count=1 status=none
  dd if=/tmp/rnd of="$DEV" bs=1M seek=40 count=1 oflag=direct status=none || die "write before discard"
  cmp -n 1048576 /tmp/rnd <(dd if="$DEV" bs=1M skip=40 count=1 iflag=direct status=none) \
    || die "data written before discard does not read back"
  blkdiscard -o $((40 << 20)) -l $((1 << 20)) "$DEV" || die "blkdiscard failed"
  cmp -n 1048576 /dev/zero <(dd if="$DEV" bs=1M skip=40 count=1 iflag=direct status=none) \
    || die "discarded range does not read back as zeroes"
  echo "discard: 1 MiB at 40 MiB discarded and reads back as zeroes (discard_max_bytes=$max)"
fi
fs_check "$DEV"
if [ -n "$VHOST_MARKER" ]; then
  echo "$VHOST_MARKER" | dd of="$DEV" bs=512 seek=98304 conv=sync,fsync oflag=direct status=none \
    || die "marker write"
fi
echo "VHOST-USER-BLK CHECK PASSED"
