#!/bin/bash
# vhost-user-blk check: the guest was booted with the target's socket as its first
# vhost-user-blk device, so the target's disk is /dev/vda.
# Env: VHOST_DEV     the disk (default /dev/vda)
#      VHOST_MB      expected size in MiB (checked when set)
#      VHOST_MARKER  a line to write at byte offset 48 MiB at the end, for the host to find
#      FIO_SECONDS   4 KiB randread duration (default 0: skipped)
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
fs_check "$DEV"
if [ -n "$VHOST_MARKER" ]; then
  echo "$VHOST_MARKER" | dd of="$DEV" bs=512 seek=98304 conv=sync,fsync oflag=direct status=none \
    || die "marker write"
fi
echo "VHOST-USER-BLK CHECK PASSED"
