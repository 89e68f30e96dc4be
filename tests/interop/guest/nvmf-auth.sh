#!/bin/bash
# NVMe in-band authentication (DH-HMAC-CHAP) with the kernel host (needs the 6.12 kernel:
# guest_run.py --kernel 6.12). While a controller of another subsystem stays connected:
# connect with the host key, then bidirectionally, checking data each time; a wrong key, no
# key, a wrong controller key and a host that is not allowed must each be refused; then the
# other controller still serves I/O and the right keys still log in.
# Env: NVME_NQN (needs DH-HMAC-CHAP), NVME_OPEN_NQN (no authentication), NVME_PORT,
#      HOST_KEY, CTRL_KEY, WRONG_KEY (DHHC-1 secrets)
. /etc/guest/lib.sh
NQN=${NVME_NQN:?set NVME_NQN}
OPEN=${NVME_OPEN_NQN:?set NVME_OPEN_NQN}
PORT=${NVME_PORT:?set NVME_PORT}
conn() { _n=$1; shift; nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$_n" -i 1 "$@"; }
dev_of() {  # dev_of NQN: sets DEV to the namespace block device of that subsystem
  DEV=
  for _i in $(seq 1 100); do
    for _d in /sys/block/nvme*n*; do
      echo "${_d##*/}" | grep -qE '^nvme[0-9]+n[0-9]+$' || continue
      [ "$(cat "$_d/device/subsysnqn" 2>/dev/null)" = "$1" ] && { DEV=/dev/${_d##*/}; return 0; }
    done
    sleep 0.1
  done
  die "no block device for $1"
}
refused() {  # refused WHAT ARGS...: the connect to NQN must fail
  _what=$1; shift
  if conn "$NQN" "$@" >/tmp/conn.out 2>&1; then cat /tmp/conn.out; die "$_what was accepted"; fi
  grep -q "already connected" /tmp/conn.out && die "$_what: nvme-cli did not even try"
  cat /tmp/conn.out
  dmesg | tail -n 3 | grep -E 'not allowed|failed to connect queue'  # the status, also when the console is quiet
  echo "REFUSED: $_what"
}

step "connect to $OPEN (no authentication); it stays connected throughout"
conn "$OPEN" || die "connect to the open subsystem failed"
dev_of "$OPEN"; OPEN_DEV=$DEV
pattern_check "$OPEN_DEV" 2 open-before

step "connect with --dhchap-secret (the target authenticates the host)"
conn "$NQN" --dhchap-secret "$HOST_KEY" || die "authenticated connect failed"
dev_of "$NQN"
pattern_check "$DEV" 4 one-way
nvme disconnect -n "$NQN" || die "disconnect failed"

step "connect with --dhchap-secret and --dhchap-ctrl-secret (bidirectional)"
conn "$NQN" --dhchap-secret "$HOST_KEY" --dhchap-ctrl-secret "$CTRL_KEY" || die "bidirectional connect failed"
dev_of "$NQN"
pattern_check "$DEV" 4 bidirectional
nvme disconnect -n "$NQN" || die "disconnect failed"
echo "AUTH-OK"

step "refusals"
refused "wrong key" --dhchap-secret "$WRONG_KEY"
refused "missing key"
refused "wrong controller key" --dhchap-secret "$HOST_KEY" --dhchap-ctrl-secret "$WRONG_KEY"
refused "host not allowed" --hostnqn nqn.2014-08.org.example:intruder \
  --hostid 0f0e0d0c-0b0a-4908-8706-050403020100 --dhchap-secret "$HOST_KEY"
dmesg | grep -iE 'auth|dhchap' | tail -20

step "the other controller still serves I/O, and the right keys still log in"
pattern_check "$OPEN_DEV" 2 open-after
conn "$NQN" --dhchap-secret "$HOST_KEY" --dhchap-ctrl-secret "$CTRL_KEY" || die "connect after the refusals failed"
dev_of "$NQN"
fio_verify "$DEV" 8M
nvme disconnect-all
echo "NVMF AUTH PASSED"
