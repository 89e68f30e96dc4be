#!/bin/bash
# NBD check: the guest's nbd-client attaches an export of the host's NBD server.
# Env: NBD_PORT  server port on the host (10.0.2.2)
#      NBD_NAME  export name
#      NBD_MB    expected size in MiB (checked when set)
. /etc/guest/lib.sh
DEV=/dev/nbd0
step "nbd-client $HOST_IP $NBD_PORT -N $NBD_NAME"
nbd-client -N "$NBD_NAME" "$HOST_IP" "$NBD_PORT" "$DEV" || die "nbd-client could not connect"
wait_for /sys/block/nbd0/pid 10 || die "nbd0 not connected"
sectors=$(cat /sys/block/nbd0/size)
echo "disk $DEV: $sectors sectors of 512 B"
[ -z "$NBD_MB" ] || [ "$sectors" -eq $((NBD_MB * 2048)) ] || die "size $sectors sectors, expected $NBD_MB MiB"
pattern_check "$DEV" 4
fio_verify "$DEV" 8M
fs_check "$DEV"
step "disconnect"
nbd-client -d "$DEV" || die "nbd-client -d failed"
echo "NBD CHECK PASSED"
