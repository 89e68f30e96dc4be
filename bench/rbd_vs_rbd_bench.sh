#!/bin/bash
# 4 KiB random writes and reads on one RBD image of a throw-away single-node cluster
# (scripts/ceph-cluster.sh): `rbd bench` (librbd alone) and spydk's bdevperf over the rbd
# bdev, one after the other in the same run, so spydk's overhead over librbd shows.
#   bench/rbd_vs_rbd_bench.sh            (QD=32 T=10 by default; results in docs/performance.md)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
QD=${QD:-32}; T=${T:-10}
D=$(mktemp -d /tmp/spydk-rbd-bench.XXXX)
trap '"$here/scripts/ceph-cluster.sh" stop "$D" >/dev/null 2>&1 || true; rm -rf "$D"' EXIT
"$here/scripts/ceph-cluster.sh" start "$D"
R="rbd -c $D/ceph.conf -k $D/admin.keyring"
$R create --size 256 rbd/bench
# written once in full first, so that reads hit objects that exist
$R bench --io-type write --io-size 4M --io-threads 4 --io-total 256M --io-pattern seq rbd/bench | tail -1
cat > "$D/bp.json" <<JSON
{"subsystems": [{"subsystem": "bdev", "config": [
 {"method": "bdev_rbd_register_cluster", "params": {"name": "c0", "config_file": "$D/ceph.conf",
  "key_file": "$D/admin.keyring"}},
 {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "rbd", "rbd_name": "bench",
  "block_size": 4096, "cluster_name": "c0"}}]}]}
JSON
# ROUNDS rounds (default 2) of both, alternating, so that a drift of the cluster shows
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "== rbd bench: 4 KiB randwrite, $QD threads"
  $R bench --io-type write --io-size 4K --io-threads "$QD" --io-total 160M --io-pattern rand rbd/bench | tail -1
  echo "== rbd bench: 4 KiB randread, $QD threads"
  $R bench --io-type read --io-size 4K --io-threads "$QD" --io-total 320M --io-pattern rand rbd/bench | tail -1
  for w in randwrite randread; do
    echo "== spydk bdevperf: 4 KiB $w, QD $QD, $T s"
    "$here/.venv/bin/spydk" bdevperf -c "$D/bp.json" -q "$QD" -o 4096 -w $w -t "$T" | tail -3
  done
done
