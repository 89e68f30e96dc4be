#!/bin/bash
# Target restart under I/O: write a marker the host watches for (it then kills the target
# with SIGKILL and starts it again), run fio verify across the restart, check a file of
# known content written before it.
# Env: VHOST_MARKER  the line the host waits for at byte offset 60 MiB
. /etc/guest/lib.sh
DEV=/dev/vda
wait_for "$DEV" 10 || die "$DEV did not appear"
dd if=/dev/urandom of=/tmp/ref bs=1M count=4 status=none
dd if=/tmp/ref of="$DEV" bs=1M seek=40 oflag=direct status=none || die "reference write"
echo "$VHOST_MARKER" | dd of="$DEV" bs=512 seek=$((60 * 2048)) conv=sync,fsync oflag=direct status=none \
  || die "marker write"
step "fio verify while the target restarts"
fio_verify "$DEV" 24M
cmp <(dd if="$DEV" bs=1M skip=40 count=4 iflag=direct status=none) /tmp/ref || die "data written before the restart changed"
echo "VHOST-RECONNECT CHECK PASSED"
