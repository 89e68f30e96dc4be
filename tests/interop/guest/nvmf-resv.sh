#!/bin/bash
# NVMe reservations from the kernel host as two hosts (two host NQNs and host IDs, one
# controller each): register with persistence (PTPL), Write Exclusive held by A, the conflict
# cases answered RESERVATION CONFLICT; then both disconnect, the host side restarts the target
# (same ptpl_file, listeners on other ports), and the state must still be there. Each host has
# its own port (nvme-cli 2.3 calls a second connect to the same address "already connected",
# even for another host NQN and with -D).
# Env: NVME_NQN, NVME_PORT_A, NVME_PORT_B (first target), NVME_PORT2_A, NVME_PORT2_B (restarted),
#      HOSTNQN_A, HOSTID_A, HOSTNQN_B, HOSTID_B
. /etc/guest/lib.sh
NQN=${NVME_NQN:?set NVME_NQN}
conn() {  # conn PORT NQN ID
  nvme connect -t tcp -a "$HOST_IP" -s "$1" -n "$NQN" --hostnqn "$2" --hostid "$3" >/dev/null
}
ctrl_of() {  # the controller character device of host NQN $1
  for c in /sys/class/nvme/nvme*; do
    [ "$(cat "$c/hostnqn")" = "$1" ] && [ "$(cat "$c/subsysnqn")" = "$NQN" ] && { echo "/dev/${c##*/}"; return; }
  done
}
# run CMD...: must succeed; conflict CMD...: must fail with RESERVATION CONFLICT (status 83h)
run() { "$@" >/tmp/out 2>&1 || { cat /tmp/out; die "failed: $*"; }; }
conflict() {
  if "$@" >/tmp/out 2>&1; then cat /tmp/out; die "accepted, expected a reservation conflict: $*"; fi
  grep -qiE 'reservation.conflict' /tmp/out || { cat /tmp/out; die "not a reservation conflict: $*"; }
  echo "CONFLICT: $*"
}
wr() { nvme io-passthru "$1" -n 1 -o 0x01 -l 512 -w -i /tmp/blk; }   # write LBA 0 (512 bytes)
rd() { nvme io-passthru "$1" -n 1 -o 0x02 -l 512 -r >/dev/null; }   # read LBA 0
dd if=/dev/urandom of=/tmp/blk bs=512 count=1 2>/dev/null

step "two hosts connect"
conn "$NVME_PORT_A" "$HOSTNQN_A" "$HOSTID_A" || die "connect A failed"
conn "$NVME_PORT_B" "$HOSTNQN_B" "$HOSTID_B" || die "connect B failed"
A=$(ctrl_of "$HOSTNQN_A"); B=$(ctrl_of "$HOSTNQN_B")
[ -n "$A" ] && [ -n "$B" ] && [ "$A" != "$B" ] || die "expected one controller per host, got A=$A B=$B"
echo "A=$A B=$B"

step "register (PTPL on), A acquires Write Exclusive, conflicts"
run nvme resv-register "$A" -n 1 --nrkey=0xaaaa --rrega=0 --cptpl=3
run nvme resv-register "$B" -n 1 --nrkey=0xbbbb --rrega=0
run nvme resv-acquire "$A" -n 1 --crkey=0xaaaa --rtype=1 --racqa=0
conflict nvme resv-acquire "$B" -n 1 --crkey=0xbbbb --rtype=1 --racqa=0      # held by A
conflict nvme resv-register "$B" -n 1 --crkey=0x1234 --nrkey=0xcccc --rrega=2  # wrong current key
conflict nvme resv-release "$A" -n 1 --crkey=0x1234 --rtype=1 --rrela=0        # wrong key
conflict wr "$B"                                                              # not the holder
run rd "$B"                                                                   # reads are allowed
run wr "$A"
run nvme resv-report "$A" -n 1 -e -d 64
cat /tmp/out
grep -qE 'rtype +: 1' /tmp/out && grep -qE 'regctl +: 2' /tmp/out && grep -qE 'ptpls +: 1' /tmp/out \
  || die "report: expected Write Exclusive, two registrants, PTPL"
nvme disconnect -n "$NQN" >/dev/null || die "disconnect failed"
echo "PHASE1 DONE"

step "waiting for the restarted target on port $NVME_PORT2_A"
for _i in $(seq 1 120); do conn "$NVME_PORT2_A" "$HOSTNQN_A" "$HOSTID_A" 2>/dev/null && break; sleep 1; done
A=$(ctrl_of "$HOSTNQN_A")
[ -n "$A" ] || die "the restarted target did not come up"
conn "$NVME_PORT2_B" "$HOSTNQN_B" "$HOSTID_B" || die "connect B after the restart failed"
B=$(ctrl_of "$HOSTNQN_B")
run nvme resv-report "$B" -n 1 -e -d 64
cat /tmp/out
grep -qE 'rtype +: 1' /tmp/out && grep -qE 'regctl +: 2' /tmp/out && grep -qE 'ptpls +: 1' /tmp/out \
  || die "the reservation did not survive the restart"
grep -qi 'rkey *: *0*aaaa' /tmp/out && grep -qi 'rkey *: *0*bbbb' /tmp/out || die "keys lost in the restart"
conflict wr "$B"
run wr "$A"
step "B preempts A: Exclusive Access, A's registration goes"
run nvme resv-acquire "$B" -n 1 --crkey=0xbbbb --prkey=0xaaaa --rtype=2 --racqa=1
conflict rd "$A"                                                              # A is no longer registered
run wr "$B"
run nvme resv-release "$B" -n 1 --crkey=0xbbbb --rtype=2 --rrela=1           # clear
run rd "$A"
nvme disconnect -n "$NQN" >/dev/null
echo "NVMF RESV PASSED"
