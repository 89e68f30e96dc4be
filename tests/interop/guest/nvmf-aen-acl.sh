#!/bin/bash
# NVMe/TCP namespace hot add/remove (AEN) and host access control, with the kernel initiator.
# The host side adds a namespace a few seconds after the guest's controller appears and
# removes it later; the guest waits for the block device to come and go.
# Env: NVME_NQN (open subsystem), NVME_ACL_NQN (subsystem that refuses this guest), NVME_PORT
. /etc/guest/lib.sh
NQN=${NVME_NQN:?set NVME_NQN}
ACL=${NVME_ACL_NQN:?set NVME_ACL_NQN}
PORT=${NVME_PORT:-4420}
BAD_HOST=nqn.2014-08.org.example:not-allowed

step "refused host: nvme connect -n $ACL --hostnqn $BAD_HOST must fail"
if nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$ACL" --hostnqn "$BAD_HOST" >/tmp/acl.out 2>&1; then
  cat /tmp/acl.out; die "a host that is not allowed was accepted"
fi
cat /tmp/acl.out
echo "refused as expected"

step "nvme connect -n $NQN"
nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$NQN" || die "connect failed"
count() { ls -d /sys/block/nvme*n* 2>/dev/null | grep -v 'c[0-9]*n' | wc -l; }
for _i in $(seq 1 100); do [ "$(count)" -ge 1 ] && break; sleep 0.1; done
[ "$(count)" -eq 1 ] || die "expected one namespace, found $(count)"
echo "NS-COUNT 1"
step "waiting for the namespace added at run time (AEN)"
for _i in $(seq 1 600); do [ "$(count)" -ge 2 ] && break; sleep 0.1; done
[ "$(count)" -eq 2 ] || die "the added namespace did not appear"
nvme list
echo "NS-ADDED"
step "waiting for the namespace removed at run time"
for _i in $(seq 1 600); do [ "$(count)" -le 1 ] && break; sleep 0.1; done
[ "$(count)" -eq 1 ] || die "the removed namespace did not disappear"
echo "NS-REMOVED"
nvme disconnect -n "$NQN" || die "disconnect failed"
echo "NVMF AEN ACL PASSED"
