#!/bin/bash
# iSCSI check with open-iscsi (iscsid + iscsiadm) and the kernel iscsi_tcp initiator against
# a target on the host's loopback (seen from the guest as $HOST_IP).
# Env: ISCSI_IQN          target IQN (required)
#      ISCSI_PORT         portal port (default 3260)
#      ISCSI_CHAP_USER, ISCSI_CHAP_SECRET  log in with one-way CHAP (unset: no CHAP)
#      ISCSI_CHAP_BAD_SECRET  first try this wrong secret: the login must be refused
#      ISCSI_VENDOR, ISCSI_PRODUCT  expected INQUIRY vendor / product (checked when set)
#      ISCSI_LUN_MB       expected LUN size in MiB (checked when set)
#      FIO_SECONDS        4 KiB randread duration (default 0: skipped)
. /etc/guest/lib.sh
IQN=${ISCSI_IQN:?set ISCSI_IQN}
PORTAL=$HOST_IP:${ISCSI_PORT:-3260}

cat /etc/iscsi/initiatorname.iscsi
start_iscsid || die "iscsid did not start"

step "discovery (SendTargets) on $PORTAL"
iscsiadm -m discovery -t sendtargets -p "$PORTAL" >/tmp/disc.out 2>&1 || { cat /tmp/disc.out; die "discovery failed"; }
cat /tmp/disc.out
grep -q " $IQN\$" /tmp/disc.out || die "$IQN not discovered"

# A target on the host's 127.0.0.1 advertises 127.0.0.1 in SendTargets, which is the
# guest's own loopback: drop those records and log in through the portal we used.
iscsiadm -m node -o delete >/dev/null 2>&1
iscsiadm -m node -T "$IQN" -p "$PORTAL" -o new >/dev/null || die "node record"
node_set() { iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n "$1" -v "$2" || die "set $1"; }
# fail fast instead of retrying a refused login for minutes
node_set node.session.initial_login_retry_max 1

if [ -n "$ISCSI_CHAP_USER" ]; then
  node_set node.session.auth.authmethod CHAP
  node_set node.session.auth.username "$ISCSI_CHAP_USER"
  if [ -n "$ISCSI_CHAP_BAD_SECRET" ]; then
    step "login with a wrong CHAP secret (must be refused)"
    node_set node.session.auth.password "$ISCSI_CHAP_BAD_SECRET"
    iscsiadm -m node -T "$IQN" -p "$PORTAL" --login && die "login with a wrong CHAP secret succeeded"
    ls /sys/class/iscsi_session/ 2>/dev/null | grep -q . && die "a session was left behind"
  fi
  node_set node.session.auth.password "${ISCSI_CHAP_SECRET:?set ISCSI_CHAP_SECRET}"
fi
step "login${ISCSI_CHAP_USER:+ (CHAP user $ISCSI_CHAP_USER)}"
iscsiadm -m node -T "$IQN" -p "$PORTAL" --login || die "login failed"
iscsiadm -m session -P 1 | sed -n '1,20p'

DEV=
for i in $(seq 1 100); do
  for b in /sys/block/sd*; do
    [ -e "$b" ] && DEV=/dev/${b##*/} && break 2
  done
  sleep 0.1
done
[ -n "$DEV" ] || die "no /dev/sdX after login"
wait_for "$DEV" 10 || die "$DEV node missing"
sectors=$(cat /sys/block/${DEV#/dev/}/size)
echo "disk $DEV: $sectors sectors of 512 B"
[ -z "$ISCSI_LUN_MB" ] || [ "$sectors" -eq $((ISCSI_LUN_MB * 2048)) ] || die "size $sectors sectors, expected $ISCSI_LUN_MB MiB"
sg_inq "$DEV" >/tmp/inq.out || die "sg_inq failed"
sed -n '1,14p' /tmp/inq.out
vendor=$(sed -n 's/^ *Vendor identification: *//p' /tmp/inq.out | sed 's/ *$//')
product=$(sed -n 's/^ *Product identification: *//p' /tmp/inq.out | sed 's/ *$//')
[ -z "$ISCSI_VENDOR" ] || [ "$vendor" = "$ISCSI_VENDOR" ] || die "vendor '$vendor', expected '$ISCSI_VENDOR'"
[ -z "$ISCSI_PRODUCT" ] || [ "$product" = "$ISCSI_PRODUCT" ] || die "product '$product', expected '$ISCSI_PRODUCT'"
sg_readcap "$DEV" || die "sg_readcap failed"

pattern_check "$DEV" 8
fio_verify "$DEV" 16M
fio_randread "$DEV" "${FIO_SECONDS:-0}"
fs_check "$DEV"

step "logout"
iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout || die "logout failed"
for i in $(seq 1 50); do [ -e "$DEV" ] || break; sleep 0.1; done
[ -e "$DEV" ] && die "$DEV still present after logout"
echo "ISCSI CHECK PASSED"
