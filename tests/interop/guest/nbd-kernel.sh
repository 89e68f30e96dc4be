#!/bin/bash
# SPDK's kernel NBD export (nbd_start_disk) against a real Linux nbd driver: spydk runs in the
# guest (host's Python over 9p), its config attaches a 64 MiB malloc bdev as /dev/nbd0 through
# the driver's generic netlink; pattern, fio verify, ext4 + fsck on it; nbd_get_disks and
# nbd_stop_disk over RPC; the device is released. Env: use_spydk's (guest_run.spydk_shares).
. /etc/guest/lib.sh
use_spydk
[ -e /sys/module/nbd ] || modprobe nbd || die "no nbd module"
cat > /tmp/tgt.json <<'JSON'
{"subsystems": [
 {"subsystem": "bdev", "config": [
  {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 131072, "block_size": 512}}]},
 {"subsystem": "nbd", "config": [
  {"method": "nbd_start_disk", "params": {"bdev_name": "Malloc0", "nbd_device": "/dev/nbd0"}}]}]}
JSON
# one small JSON-RPC call (no spydk import: each spydk start costs seconds under TCG)
rpc() {
  /host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path \
    /host/py/lib:/host/usr/lib/x86_64-linux-gnu "/host/py/$SPYDK_PY" -S -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(90); s.connect("/tmp/tgt.sock")
p = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
req = {"jsonrpc": "2.0", "id": 1, "method": sys.argv[1]}
if p is not None: req["params"] = p
s.sendall(json.dumps(req).encode()); buf = b""
while True:
    d = s.recv(65536)
    if not d: sys.exit("the target closed the RPC connection without an answer")
    buf += d
    try: r = json.loads(buf); break
    except ValueError: pass
print(json.dumps(r.get("result", r)))
sys.exit("error" in r)' "$@"
}
step "spydk tgt with nbd_start_disk Malloc0 /dev/nbd0 in its config"
spydk tgt -r /tmp/tgt.sock --json /tmp/tgt.json > /tmp/tgt.log 2>&1 &
TGT=$!
wait_for /sys/block/nbd0/pid 120 || { cat /tmp/tgt.log; die "nbd0 not connected by spydk"; }
sectors=$(cat /sys/block/nbd0/size)
echo "disk /dev/nbd0: $sectors sectors of 512 B"
[ "$sectors" -eq 131072 ] || die "size $sectors sectors, expected 131072"
out=$(rpc nbd_get_disks) || die "nbd_get_disks: $out"
echo "nbd_get_disks: $out"
echo "$out" | grep -q '"nbd_device": "/dev/nbd0"' && echo "$out" | grep -q '"bdev_name": "Malloc0"' \
  || die "nbd_get_disks does not list /dev/nbd0 on Malloc0"
pattern_check /dev/nbd0 4
fio_verify /dev/nbd0 8M
fs_check /dev/nbd0
step "nbd_stop_disk /dev/nbd0"
out=$(rpc nbd_stop_disk '{"nbd_device": "/dev/nbd0"}') || die "nbd_stop_disk: $out"
for _ in $(seq 100); do [ -e /sys/block/nbd0/pid ] || break; sleep 0.2; done
[ -e /sys/block/nbd0/pid ] && die "nbd0 still connected after nbd_stop_disk"
[ "$(rpc nbd_get_disks)" = "[]" ] || die "nbd_get_disks not empty after nbd_stop_disk"
# $TGT is the subshell running the spydk function, not Python: stop the target over RPC
rpc spdk_kill_instance '{"sig_name": "SIGTERM"}' >/dev/null || die "spdk_kill_instance"
for _ in $(seq 150); do kill -0 $TGT 2>/dev/null || break; sleep 0.2; done
kill -0 $TGT 2>/dev/null && die "spydk tgt still running 30 s after spdk_kill_instance"
wait $TGT; echo "spydk tgt exited $?"
grep -i "traceback" /tmp/tgt.log && die "a traceback in the target's log"
echo "NBD KERNEL CHECK PASSED"
