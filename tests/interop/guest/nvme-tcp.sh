#!/bin/bash
# NVMe/TCP check with the kernel initiator (nvme-tcp) and nvme-cli against a target on the
# host's loopback (seen from the guest as $HOST_IP).
# Env: NVME_NQN        subsystem NQN (required)
#      NVME_PORT       target port (default 4420)
#      NVME_DIGEST     off | on | both (default both: one pass without, one with header
#                      and data digests, both crc32c)
#      NVME_DISCOVERY  1 (default): the target serves the discovery subsystem on the port
#      NVME_SERIAL, NVME_MODEL  expected serial / model number (checked when set)
#      FIO_SECONDS     4 KiB randread duration per pass (default 0: skipped)
. /etc/guest/lib.sh
NQN=${NVME_NQN:?set NVME_NQN}
PORT=${NVME_PORT:-4420}
case ${NVME_DIGEST:-both} in
  off) PASSES=off;; on) PASSES=on;; both) PASSES="off on";;
  *) die "NVME_DIGEST must be off, on or both";;
esac

[ -c /dev/nvme-fabrics ] || die "/dev/nvme-fabrics missing (nvme-tcp not loaded?)"
echo "host NQN $(cat /etc/nvme/hostnqn)"

if [ "${NVME_DISCOVERY:-1}" = 1 ]; then
  step "nvme discover -t tcp -a $HOST_IP -s $PORT"
  nvme discover -t tcp -a "$HOST_IP" -s "$PORT" >/tmp/disc.out 2>&1 || { cat /tmp/disc.out; die "discover failed"; }
  cat /tmp/disc.out
  grep -q "subnqn: *$NQN\$" /tmp/disc.out || die "$NQN is not in the discovery log"
fi

# find_ns: the namespace block device (skipping the hidden per-path nodes nvmeXcYnZ of
# native multipath), waiting up to 10 s.
find_ns() {
  for _i in $(seq 1 100); do
    for _b in /sys/block/nvme*n*; do
      case ${_b##*/} in *c*) continue;; esac
      [ -e "$_b" ] && { echo "/dev/${_b##*/}"; return 0; }
    done
    sleep 0.1
  done
  return 1
}

n=0
for d in $PASSES; do
  n=$((n + 1))
  DIG=; [ "$d" = on ] && DIG="--hdr-digest --data-digest"
  # The discovery log carries the target's own address (127.0.0.1 for a target on the
  # host's loopback): connect through $HOST_IP explicitly instead of connect-all.
  step "pass $n: nvme connect -t tcp -a $HOST_IP -s $PORT -n $NQN $DIG"
  nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$NQN" $DIG || die "connect failed (digests $d)"
  DEV=$(find_ns) || die "no namespace block device after connect"
  wait_for "$DEV" 10 || die "$DEV node missing"
  C=$(ls /sys/class/nvme | head -1)
  nvme list
  echo "controller $C: $(cat /sys/class/nvme/$C/transport) $(cat /sys/class/nvme/$C/address)"
  nvme id-ctrl "/dev/$C" | grep -E '^(vid|sn|mn|fr|subnqn|ioccsz|iorcsz|maxcmd|nn|sgls) ' || die "id-ctrl failed"
  # Linux 6.1 shows SN/MN in sysfs with the spec's space padding: compare trimmed.
  sn=$(sed 's/ *$//' /sys/class/nvme/$C/serial); mn=$(sed 's/ *$//' /sys/class/nvme/$C/model)
  [ -z "$NVME_SERIAL" ] || [ "$sn" = "$NVME_SERIAL" ] || die "serial '$sn', expected '$NVME_SERIAL'"
  [ -z "$NVME_MODEL" ] || [ "$mn" = "$NVME_MODEL" ] || die "model '$mn', expected '$NVME_MODEL'"
  [ "$(cat /sys/class/nvme/$C/subsysnqn)" = "$NQN" ] || die "subsysnqn mismatch"
  if [ "$n" -gt 1 ]; then
    step "the file system from pass 1 survived the reconnect"
    fsck.ext4 -f -n "$DEV" || die "fsck after reconnect"
    mount -t ext4 -o ro "$DEV" /mnt/t || die "mount after reconnect"
    [ "$(sha256sum /mnt/t/data | cut -d' ' -f1)" = "$(cat /tmp/fs.sum)" ] || die "file changed across reconnect"
    umount /mnt/t
  fi
  pattern_check "$DEV" 8
  fio_verify "$DEV" 16M
  fio_randread "$DEV" "${FIO_SECONDS:-0}"
  # last, so that the next pass finds the file system intact
  [ "$n" -eq 1 ] && fs_check "$DEV"
  step "nvme disconnect -n $NQN"
  nvme disconnect -n "$NQN" || die "disconnect failed"
  for _i in $(seq 1 50); do [ -e "$DEV" ] || break; sleep 0.1; done
  [ -e "$DEV" ] && die "$DEV still present after disconnect"
done
echo "NVME-TCP CHECK PASSED"
