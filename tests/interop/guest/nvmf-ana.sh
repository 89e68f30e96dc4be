#!/bin/bash
# ANA multipath with the kernel's native NVMe multipath: one subsystem on two listeners
# (ports NVME_PORT and NVME_PORT2) is one disk with two paths. fio writes and verifies
# (crc32c, verified as it goes) while the host side makes the first path inaccessible, then
# the second one (the first optimized again): I/O must move each time, fio must stay clean.
# Env: NVME_NQN, NVME_PORT, NVME_PORT2, FIO_SECONDS
. /etc/guest/lib.sh
NQN=${NVME_NQN:?set NVME_NQN}
for p in "$NVME_PORT" "$NVME_PORT2"; do
  nvme connect -t tcp -a "$HOST_IP" -s "$p" -n "$NQN" -i 1 || die "connect on port $p failed"
done
disks=$(ls /sys/block | grep -cE '^nvme[0-9]+n[0-9]+$')
[ "$disks" -eq 1 ] || die "expected one multipath disk, found $disks"
DEV=/dev/$(ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$')
# the path devices (nvmeXcYnZ, hidden behind the multipath disk) with their ANA states
paths() { for p in /sys/class/nvme/nvme*/nvme*c*n*; do echo "${p##*/}=$(cat "$p/ana_state")"; done; }
npaths=$(paths | wc -l)
[ "$npaths" -eq 2 ] || die "expected two paths under $DEV, found $npaths"
echo "PATHS-BEFORE $(paths | tr '\n' ' ')"
nvme list-subsys "$DEV"
step "fio verify for ${FIO_SECONDS:-30} s while the paths change"
fio --eta=never --name=ana --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=8 \
    --rw=randwrite --bs=4k --size=8M --time_based --runtime="${FIO_SECONDS:-30}" \
    --verify=crc32c --verify_backlog=64 --verify_fatal=1 --group_reporting >/tmp/fio.out 2>&1
rc=$?
grep -E 'IOPS|err=' /tmp/fio.out
[ "$rc" -eq 0 ] || { cat /tmp/fio.out; die "fio verify failed across the path changes"; }
echo "PATHS-AFTER $(paths | tr '\n' ' ')"
paths | grep -q '=inaccessible' || die "no path was reported inaccessible"
paths | grep -q '=optimized' || die "no path left optimized"
dmesg | grep -iE 'ana|path' | tail -10
nvme disconnect -n "$NQN"
echo "NVMF ANA PASSED"
