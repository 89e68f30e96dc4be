#!/bin/bash
# spydk-made raid1, raid0 and raid5f (with superblocks) assembled by SPDK C v24.01's examine
# from those superblocks alone, then read.
# spydk serves the base files over NVMe/TCP and SPDK attaches them with bdev_nvme, because
# SPDK v24.01 cannot give a file-backed bdev a chosen uuid: its aio bdevs get a random one
# and bdev_passthru_create's "uuid" is overwritten by one derived from the base's (v24.01's
# vbdev_passthru_register), so its raid examine never finds them in a superblock. SPDK's
# config has no bdev_raid_create: the raids it reads exist only because its examine found
# spydk's superblocks.
# By hand (the test suite has no SPDK):
#   SPDK=/path/to/spdk [SPDK_DD=/path/to/spdk_dd-with-raid5f] tests/raid/data/spdk-assembles-spydk.sh
# Without SPDK_DD (or if it lacks raid5f) the raid5f part is skipped and said so.
# Recorded run: docs/raid.md.
set -ex
SPYDK=${SPYDK:-$(cd "$(dirname "$0")/../../.." && pwd)/.venv/bin/spydk}
SPDK=${SPDK:?set SPDK to a built SPDK v24.01 tree}
SPDK_DD=${SPDK_DD:-}
F="--no-huge -s 1024 --no-pci --disable-cpumask-locks"
W=$(mktemp -d /tmp/spdk-assembles-spydk.XXXX); cd "$W"
NAMES=(b0 b1 b2 b3 b4 b5 b6)
UUIDS=(); for i in 0 1 2 3 4 5 6; do UUIDS+=("5d0000$i$i-7a1d-4b5e-9c3d-00000000000$i"); done
for n in "${NAMES[@]}"; do truncate -s 4M $n.img; done
python3 -c "
import struct
def pattern(tag, n): return b''.join((tag + struct.pack('>Q', i)).ljust(64, b'.') * 8 for i in range(n))
open('p1.bin','wb').write(pattern(b'spydk-raid1 block ', 6144))
open('p0.bin','wb').write(pattern(b'spydk-raid0 block ', 12288))
open('p5.bin','wb').write(pattern(b'spydk-raid5f block ', 12288))"
# 1. spydk: three raids with superblocks over aio bdevs with fixed uuids; the patterns written
#    through its NBD server
$SPYDK tgt -r $W/a.sock > tgt-a.log 2>&1 & PID=$!
for _ in $(seq 50); do [ -S $W/a.sock ] && break; sleep 0.2; done
R="$SPYDK rpc -s $W/a.sock"
for i in 0 1 2 3 4 5 6; do $R bdev_aio_create $W/${NAMES[$i]}.img X$i 512 -u ${UUIDS[$i]}; done
$R bdev_raid_create -n SpydkR1 -r raid1 -b "X0 X1" -s --uuid 33333333-3333-4333-8333-333333333333
$R bdev_raid_create -n SpydkR0 -r raid0 -z 64 -b "X2 X3" -s --uuid 44444444-4444-4444-8444-444444444444
$R bdev_raid_create -n SpydkR5 -r raid5f -z 16 -b "X4 X5 X6" -s --uuid 66666666-6666-4666-8666-666666666666
PORT=$($R nbd_server_listen -p 0)
for r in SpydkR1 SpydkR0 SpydkR5; do $R nbd_server_start_export $r; done
qemu-img convert -n -f raw -O raw p1.bin nbd://127.0.0.1:$PORT/SpydkR1
qemu-img convert -n -f raw -O raw p0.bin nbd://127.0.0.1:$PORT/SpydkR0
qemu-img convert -n -f raw -O raw p5.bin nbd://127.0.0.1:$PORT/SpydkR5
kill $PID; wait $PID || true
# 2. spydk exports the seven bases, not examined, as NVMe/TCP namespaces (namespace uuid = bdev
#    uuid, which SPDK's bdev_nvme takes as the bdev's uuid)
kill_spydk() { kill $PID; wait $PID || true; }
NVPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$SPYDK tgt -r $W/b.sock --wait-for-rpc > tgt-b.log 2>&1 & PID=$!
trap kill_spydk EXIT
for _ in $(seq 50); do [ -S $W/b.sock ] && break; sleep 0.2; done
R="$SPYDK rpc -s $W/b.sock"
$R bdev_set_options --no-auto-examine
$R framework_start_init
$R nvmf_create_transport -t TCP
$R nvmf_create_subsystem nqn.2016-06.io.spdk:raidbases -a -s SPYDK0001
for i in 0 1 2 3 4 5 6; do
  $R bdev_aio_create $W/${NAMES[$i]}.img X$i 512 -u ${UUIDS[$i]}
  $R nvmf_subsystem_add_ns nqn.2016-06.io.spdk:raidbases X$i; done
$R nvmf_subsystem_add_listener nqn.2016-06.io.spdk:raidbases -t tcp -a 127.0.0.1 -s $NVPORT
cat > spdk-all.json <<JSON
{"subsystems": [{"subsystem": "bdev", "config": [
 {"method": "bdev_nvme_attach_controller", "params": {"name": "N", "trtype": "tcp", "adrfam": "ipv4",
  "traddr": "127.0.0.1", "trsvcid": "$NVPORT", "subnqn": "nqn.2016-06.io.spdk:raidbases"}},
 {"method": "bdev_wait_for_examine"}]}]}
JSON

# 2a. SPDK's spdk_tgt: what its bdev_raid_get_bdevs says about the raid1 and the raid0
$SPDK/build/bin/spdk_tgt $F -r $W/spdk.sock --json spdk-all.json > spdk-tgt.log 2>&1 & SPID=$!
export PYTHONPATH=$SPDK/python
for _ in $(seq 100); do python3 $SPDK/scripts/rpc.py -s $W/spdk.sock -t 2 framework_wait_init 2>/dev/null && break; sleep 0.3; done
python3 $SPDK/scripts/rpc.py -s $W/spdk.sock bdev_raid_get_bdevs all > spdk-raids.json
kill -TERM $SPID; wait $SPID || true
python3 - <<'PY'
import json
raids = {r["name"]: r for r in json.load(open("spdk-raids.json"))}
for n, lvl, bases in (("SpydkR1", "raid1", ["Nn1", "Nn2"]), ("SpydkR0", "raid0", ["Nn3", "Nn4"])):
    r = raids[n]
    got = (r["state"], r["raid_level"], r["superblock"], [b["name"] for b in r["base_bdevs_list"]])
    assert got == ("online", lvl, True, bases), (n, got)
    print(n, r["uuid"], got)
PY
# 2b. SPDK's spdk_dd reads each raid out (raid5f only with an spdk_dd that has it)
DD="timeout -s KILL 120 ${SPDK_DD:-$SPDK/build/bin/spdk_dd}"
$DD $F -r $W/dd.sock --json spdk-all.json --ib=SpydkR1 --of=out1.bin --bs=65536 --count=48
$DD $F -r $W/dd.sock --json spdk-all.json --ib=SpydkR0 --of=out0.bin --bs=65536 --count=96
cmp out1.bin p1.bin && cmp out0.bin p0.bin && echo "SPDK ASSEMBLED SPYDK'S RAID1 AND RAID0: OK"
if [ -n "$SPDK_DD" ]; then
  $DD $F -r $W/dd.sock --json spdk-all.json --ib=SpydkR5 --of=out5.bin --bs=32768 --count=192
  cmp out5.bin p5.bin && echo "SPDK ASSEMBLED SPYDK'S RAID5F: OK"
else
  echo "raid5f not tried: set SPDK_DD to an spdk_dd with raid5f"
fi
