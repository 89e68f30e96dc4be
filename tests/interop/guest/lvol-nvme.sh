#!/bin/bash
# An lvol exported over NVMe/TCP to the Linux kernel initiator: fio verify, ext4 + fsck, then
# a snapshot taken by the host while the file system is mounted, its clone exported as a
# new namespace; the clone's file system is checked and holds what was synced before the
# snapshot, the original keeps working.
# Env: NVME_NQN, NVME_PORT. Namespaces: the lvol (64 MiB) and a 1 MiB "signal" disk; one
# write to the signal disk tells the host to take the snapshot.
. /etc/guest/lib.sh
NQN=${NVME_NQN:?set NVME_NQN}
PORT=${NVME_PORT:-4420}
disks() { for d in /sys/block/nvme*n*; do case $d in *c[0-9]*n*) ;; *) echo "$(basename $d) $(cat $d/size)";; esac; done; }
count() { disks | wc -l; }

step "nvme connect -n $NQN"
nvme connect -t tcp -a "$HOST_IP" -s "$PORT" -n "$NQN" || die "connect failed"
for _i in $(seq 1 100); do [ "$(count)" -ge 2 ] && break; sleep 0.1; done
disks
LV=/dev/$(disks | awk '$2 == 131072 {print $1; exit}')
SIG=/dev/$(disks | awk '$2 == 2048 {print $1; exit}')
wait_for "$LV" 10 || die "no lvol namespace"; wait_for "$SIG" 10 || die "no signal namespace"
echo "lvol $LV signal $SIG"

step "fio verify on the lvol (thin: the first writes allocate clusters)"
fio_verify "$LV" 16M

step "ext4 on the lvol, a file synced, then the host snapshots it while mounted"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LV" || die "mkfs"
mkdir -p /mnt/t /mnt/c
mount -t ext4 "$LV" /mnt/t || die "mount"
dd if=/dev/urandom of=/mnt/t/a bs=64k count=64 status=none || die "write a"
sha256sum /mnt/t/a | cut -d' ' -f1 > /tmp/a.sum
sync
dd if=/dev/zero of="$SIG" bs=4k count=1 oflag=direct status=none || die "signal"
for _i in $(seq 1 600); do [ "$(count)" -ge 3 ] && break; sleep 0.1; done
[ "$(count)" -ge 3 ] || die "the clone's namespace did not appear"
disks
CL=/dev/$(disks | awk -v lv="$(basename $LV)" '$2 == 131072 && $1 != lv {print $1; exit}')
wait_for "$CL" 10 || die "no clone namespace"
echo "clone $CL"

step "the original, still mounted, keeps working"
dd if=/dev/urandom of=/mnt/t/b bs=64k count=32 status=none || die "write b"
sha256sum /mnt/t/b | cut -d' ' -f1 > /tmp/b.sum
sync
[ "$(sha256sum /mnt/t/a | cut -d' ' -f1)" = "$(cat /tmp/a.sum)" ] || die "a changed on the original"
umount /mnt/t || die "umount"
fsck.ext4 -f -n "$LV" || die "fsck of the original"
mount -t ext4 -o ro "$LV" /mnt/t || die "remount"
[ "$(sha256sum /mnt/t/b | cut -d' ' -f1)" = "$(cat /tmp/b.sum)" ] || die "b changed on the original"
umount /mnt/t

step "the clone: journal replayed by fsck, clean, holds a (synced before the snapshot), not b"
fsck.ext4 -f -y "$CL"; rc=$?
[ "$rc" -le 1 ] || die "fsck -y of the clone returned $rc"
fsck.ext4 -f -n "$CL" || die "the clone is not clean after its journal replay"
mount -t ext4 "$CL" /mnt/c || die "mount the clone"
[ "$(sha256sum /mnt/c/a | cut -d' ' -f1)" = "$(cat /tmp/a.sum)" ] || die "a differs on the clone"
[ ! -e /mnt/c/b ] || die "b, written after the snapshot, is on the clone"
dd if=/dev/urandom of=/mnt/c/c bs=64k count=16 status=none || die "write on the clone"
sync; umount /mnt/c || die "umount the clone"
fsck.ext4 -f -n "$CL" || die "fsck of the clone after writing"

step "nvme disconnect"
nvme disconnect -n "$NQN" || die "disconnect failed"
echo "LVOL NVME PASSED"
