#!/bin/bash
# spydk-made raids read by SPDK C v24.01 (over NVMe/TCP, so the bases keep their uuids)
# By hand (the test suite has no SPDK): SPDK=/path/to/spdk tests/raid/data/spdk-reads-spydk.sh
# Recorded run: docs/raid.md.
set -ex
SPYDK=${SPYDK:-$(cd "$(dirname "$0")/../../.." && pwd)/.venv/bin/spydk}
SPDK=${SPDK:?set SPDK to a built SPDK v24.01 tree}
W=$(mktemp -d /tmp/spdk-reads-spydk.XXXX); cd "$W"
truncate -s 4M w.img x.img y.img z.img
python3 -c "
import struct
def pattern(tag, n): return b''.join((tag + struct.pack('>Q', i)).ljust(64, b'.') * 8 for i in range(n))
open('p1.bin','wb').write(pattern(b'spydk-raid1 block ', 2048))
open('p0.bin','wb').write(pattern(b'spydk-raid0 block ', 4096))"
# 1. spydk makes the raids (superblock) and writes the patterns through its NBD server
$SPYDK tgt -r $W/a.sock > tgt-a.log 2>&1 & PID=$!
sleep 3
R="$SPYDK rpc -s $W/a.sock"
i=0; for f in w x y z; do
  $R bdev_aio_create $W/$f.img X$i 512 -u 0000000$i-1234-4abc-8def-00000000000$i; i=$((i+1)); done
$R bdev_raid_create -n SpydkR1 -r raid1 -b "X0 X1" -s --uuid 33333333-3333-4333-8333-333333333333
$R bdev_raid_create -n SpydkR0 -r raid0 -z 64 -b "X2 X3" -s --uuid 44444444-4444-4444-8444-444444444444
PORT=$($R nbd_server_listen -p 0)
$R nbd_server_start_export SpydkR1; $R nbd_server_start_export SpydkR0
qemu-img convert -n -f raw -O raw p1.bin nbd://127.0.0.1:$PORT/SpydkR1
qemu-img convert -n -f raw -O raw p0.bin nbd://127.0.0.1:$PORT/SpydkR0
kill $PID; wait $PID || true
# 2. spydk exports the four bases, not examined, as NVMe/TCP namespaces (uuid = bdev uuid)
NVPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$SPYDK tgt -r $W/b.sock --wait-for-rpc > tgt-b.log 2>&1 & PID=$!
sleep 3
R="$SPYDK rpc -s $W/b.sock"
$R bdev_set_options --no-auto-examine
$R framework_start_init
$R nvmf_create_transport -t TCP
$R nvmf_create_subsystem nqn.2016-06.io.spdk:raidbases -a -s SPYDK0001
i=0; for f in w x y z; do
  $R bdev_aio_create $W/$f.img X$i 512 -u 0000000$i-1234-4abc-8def-00000000000$i
  $R nvmf_subsystem_add_ns nqn.2016-06.io.spdk:raidbases X$i; i=$((i+1)); done
$R nvmf_subsystem_add_listener nqn.2016-06.io.spdk:raidbases -t tcp -a 127.0.0.1 -s $NVPORT
# 3. SPDK's spdk_dd attaches them; its examine assembles both raids; read them out
cat > dd-read.json <<JSON
{"subsystems": [{"subsystem": "bdev", "config": [
 {"method": "bdev_nvme_attach_controller", "params": {"name": "N", "trtype": "tcp", "adrfam": "ipv4",
  "traddr": "127.0.0.1", "trsvcid": "$NVPORT", "subnqn": "nqn.2016-06.io.spdk:raidbases"}},
 {"method": "bdev_wait_for_examine"}]}]}
JSON
$SPDK/build/bin/spdk_dd --no-huge -s 1024 --no-pci --disable-cpumask-locks --json dd-read.json \
    --ib=SpydkR1 --of=out1.bin --bs=65536 --count=16
$SPDK/build/bin/spdk_dd --no-huge -s 1024 --no-pci --disable-cpumask-locks --json dd-read.json \
    --ib=SpydkR0 --of=out0.bin --bs=65536 --count=32
kill $PID; wait $PID || true
cmp out1.bin p1.bin && cmp out0.bin p0.bin && echo "SPDK READ SPYDK'S RAIDS: OK"
