#!/bin/bash
# A throw-away single-node Ceph cluster on loopback, for trying and testing the rbd bdev:
# one monitor, one manager, one BlueStore OSD on a sparse file, cephx on, every file under
# one folder (no /etc/ceph, no services). Debian 12 packages: ceph-mon ceph-mgr ceph-osd
# ceph-common (scripts/debian-packages.txt).
#
#   scripts/ceph-cluster.sh start DIR [PORT]   # prints: conf=DIR/ceph.conf keyring=... mon=127.0.0.1:PORT
#   scripts/ceph-cluster.sh stop DIR           # stops the daemons (the folder stays)
#   scripts/ceph-cluster.sh osd-stop DIR | osd-start DIR
#
# Then: rbd -c DIR/ceph.conf -k DIR/admin.keyring create --size 64 rbd/img0
#       spydk rpc bdev_rbd_register_cluster c0 --config-file DIR/ceph.conf --key-file DIR/admin.keyring
#       spydk rpc bdev_rbd_create -c c0 rbd img0 4096
set -euo pipefail
cmd=${1:?start|stop|osd-stop|osd-start}
D=$(realpath -m "${2:?folder}")
unset CEPH_KEYRING CEPH_CONF CEPH_ARGS   # daemons must not pick up the admin's keyring
CONF=$D/ceph.conf
ceph_() { timeout 60 ceph -c "$CONF" -k "$D/admin.keyring" "$@"; }
stop_pid() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; rm -f "$1"; }

case "$cmd" in
start)
  PORT=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
  mkdir -p "$D"/{run,log,mon,mgr,osd0}
  FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')
  cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:$PORT
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
run_dir = $D/run
pid_file = $D/run/\$name.pid
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
mon_data_avail_warn = 1
mon_data_avail_crit = 0
mgr_initial_modules =
auth_allow_insecure_global_id_reclaim = false
[client.admin]
keyring = $D/admin.keyring
[mon.a]
mon_data = $D/mon
keyring = $D/mon/keyring
[mgr.x]
mgr_data = $D/mgr
keyring = $D/mgr/keyring
[osd.0]
osd_data = $D/osd0
keyring = $D/osd0/keyring
osd_objectstore = bluestore
bluestore_block_path = $D/osd0.block
bluestore_block_create = true
bluestore_block_size = 4294967296
osd_memory_target = 939524096
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
CONF
  ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$D/admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$D/mon.keyring" --import-keyring "$D/admin.keyring" >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$PORT]" --fsid "$FSID" "$D/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
  ceph-mon -c "$CONF" -i a
  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o "$D/mgr/keyring"
  ceph-mgr -c "$CONF" -i x
  OSD_UUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
  ceph_ osd new "$OSD_UUID" >/dev/null
  ceph_ auth get-or-create osd.0 mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' -o "$D/osd0/keyring"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" 2>>"$D/log/osd-mkfs.log"
  ceph-osd -c "$CONF" -i 0
  ceph_ osd pool create rbd 8 >/dev/null 2>&1
  ceph_ osd pool application enable rbd rbd >/dev/null 2>&1
  # all placement groups active+clean, twice a second apart (the manager adds its own pool)
  clean() { ceph_ pg stat 2>/dev/null | grep -Eq '^([0-9]+) pgs: \1 active\+clean;'; }
  ok=0
  for _ in $(seq 240); do
    if clean; then ok=$((ok + 1)); else ok=0; fi
    [ $ok -ge 3 ] && break
    sleep 0.5
  done
  [ $ok -ge 3 ] || { echo "cluster did not reach active+clean" >&2; ceph_ -s >&2; exit 1; }
  echo "conf=$CONF keyring=$D/admin.keyring mon=127.0.0.1:$PORT"
  ;;
stop)
  for p in osd.0 mgr.x mon.a; do stop_pid "$D/run/$p.pid"; done
  ;;
osd-stop)
  stop_pid "$D/run/osd.0.pid"
  ;;
osd-start)
  ceph-osd -c "$CONF" -i 0
  ;;
*)
  echo "usage: $0 start|stop|osd-stop|osd-start DIR [PORT]" >&2; exit 2;;
esac
