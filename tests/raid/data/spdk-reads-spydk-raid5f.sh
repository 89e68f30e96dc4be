#!/bin/bash
# A raid5f written by spydk, read by SPDK C v24.01 over the same files (no superblock: both
# sides create the array over aio bdevs of the files, so only the data layout is compared).
# By hand (the test suite has no SPDK):
#   SPDK_DD=/path/to/spdk_dd tests/raid/data/spdk-reads-spydk-raid5f.sh
# SPDK_DD: spdk_dd of SPDK v24.01 with raid5f (./configure --with-raid5f). Recorded run: docs/raid.md.
set -ex
SPYDK=${SPYDK:-$(cd "$(dirname "$0")/../../.." && pwd)/.venv/bin/spydk}
SPDK_DD=${SPDK_DD:?set SPDK_DD to an spdk_dd built with raid5f}
W=$(mktemp -d /tmp/spdk-reads-spydk-r5.XXXX); cd "$W"
truncate -s 4M t.img u.img v.img
python3 -c "
import struct
def pattern(tag, n): return b''.join((tag + struct.pack('>Q', i)).ljust(64, b'.') * 8 for i in range(n))
open('p5.bin','wb').write(pattern(b'spydk-raid5f block ', 16128))"
# 1. spydk: raid5f over the three files, the pattern written through its NBD server
$SPYDK tgt -r $W/a.sock > tgt-a.log 2>&1 & PID=$!
sleep 3
R="$SPYDK rpc -s $W/a.sock"
i=0; for f in t u v; do $R bdev_aio_create $W/$f.img X$i 512; i=$((i+1)); done
$R bdev_raid_create -n SpydkR5 -r raid5f -z 16 -b "X0 X1 X2"
PORT=$($R nbd_server_listen -p 0)
$R nbd_server_start_export SpydkR5
# whole stripes only (32 KiB here): qemu-img writes large aligned chunks
qemu-img convert -n -f raw -O raw p5.bin nbd://127.0.0.1:$PORT/SpydkR5
kill $PID; wait $PID || true
# 2. SPDK: the same array over the same files, read out
cat > dd-read.json <<JSON
{"subsystems": [{"subsystem": "bdev", "config": [
 {"method": "bdev_aio_create", "params": {"name": "A0", "filename": "$W/t.img", "block_size": 512}},
 {"method": "bdev_aio_create", "params": {"name": "A1", "filename": "$W/u.img", "block_size": 512}},
 {"method": "bdev_aio_create", "params": {"name": "A2", "filename": "$W/v.img", "block_size": 512}},
 {"method": "bdev_raid_create", "params": {"name": "R5", "raid_level": "raid5f", "strip_size_kb": 16,
  "base_bdevs": ["A0", "A1", "A2"]}}]}]}
JSON
$SPDK_DD --no-huge -s 1024 --no-pci --disable-cpumask-locks -r $W/dd.sock --json dd-read.json \
    --ib=R5 --of=out5.bin --bs=32768 --count=252
cmp out5.bin p5.bin && echo "SPDK READ SPYDK'S RAID5F: OK"
