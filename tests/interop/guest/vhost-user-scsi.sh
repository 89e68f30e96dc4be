#!/bin/bash
# vhost-user-scsi check: the guest was booted with the target's socket as a vhost-user-scsi
# controller with one target (LUN 0), so its disk is /dev/sda.
# Env: VHOST_MB      expected size in MiB (checked when set)
#      VHOST_VENDOR  expected INQUIRY vendor (checked when set)
. /etc/guest/lib.sh
DEV=/dev/sda
wait_for "$DEV" 15 || die "$DEV did not appear"
step "sg_inq $DEV"
sg_inq "$DEV" > /tmp/inq || die "sg_inq failed"
cat /tmp/inq
[ -z "$VHOST_VENDOR" ] || grep -q "Vendor identification: $VHOST_VENDOR" /tmp/inq || die "vendor is not $VHOST_VENDOR"
sg_readcap -l "$DEV" || die "sg_readcap failed"
sg_vpd -p bl "$DEV" || die "Block Limits VPD page"
sectors=$(cat /sys/block/sda/size)
[ -z "$VHOST_MB" ] || [ "$sectors" -eq $((VHOST_MB * 2048)) ] || die "size $sectors sectors, expected $VHOST_MB MiB"

# SCSI conformance through the vhost-user-scsi path: the commands the LU answers over iSCSI
# (tests/scsi, libiscsi), sent by the guest kernel's sg driver through virtio-scsi. Every
# check runs and prints its result; the script fails at the end if any did.
step "SCSI conformance"
SG=/dev/$(ls /sys/block/sda/device/scsi_generic/)
n=0; fails=0
ok()  { n=$((n + 1)); echo "conformance ok: $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "conformance FAILED: $1"; sed 's/^/    /' /tmp/c.out; }
# expect NAME RC CMD...: CMD exits with RC (sg3_utils: 0 good, 5 illegal request, 14 miscompare)
expect() { _n=$1; _rc=$2; shift 2; "$@" >/tmp/c.out 2>&1; _got=$?
           if [ "$_got" -eq "$_rc" ]; then ok "$_n"; else bad "$_n (exit $_got, expected $_rc)"; fi; }
# sense NAME PATTERN CMD...: CMD's output (sg_raw decodes the sense data) matches PATTERN
sense() { _n=$1; _p=$2; shift 2; "$@" >/tmp/c.out 2>&1
          if grep -qi "$_p" /tmp/c.out; then ok "$_n"; else bad "$_n (no '$_p')"; fi; }
# same NAME FILE1 FILE2
# readback LBA COUNT: /tmp/r holds those blocks (sg_dd does not truncate an existing file)
readback() { rm -f /tmp/r; sg_dd if="$SG" of=/tmp/r bs=512 skip="$1" count="$2" >/dev/null 2>&1; }
same() { if cmp -s "$2" "$3" >/tmp/c.out 2>&1; then ok "$1"; else bad "$1 (data differs)"; fi; }
lbas=$(cat /sys/block/sda/size)
hex8() { printf '%016x' "$1" | sed 's/../& /g'; }
expect "TEST UNIT READY" 0 sg_turs "$DEV"
expect "REQUEST SENSE" 0 sg_requests "$DEV"
expect "VPD supported pages" 0 sg_vpd -p sv "$DEV"
expect "VPD unit serial number" 0 sg_vpd -p sn "$DEV"
expect "VPD device identification" 0 sg_vpd -p di "$DEV"
expect "VPD block device characteristics" 0 sg_vpd -p bdc "$DEV"
expect "VPD logical block provisioning" 0 sg_vpd -p lbpv "$DEV"
sense "INQUIRY of an unsupported VPD page" "invalid field in cdb" sg_raw -r 255 "$SG" 12 01 de 00 ff 00
expect "READ CAPACITY(10)" 0 sg_readcap "$DEV"
sg_readcap -l "$DEV" >/tmp/c.out 2>&1
if grep -q "Last LBA=$((lbas - 1)) " /tmp/c.out; then ok "READ CAPACITY(16)"; else bad "READ CAPACITY(16) (last LBA)"; fi
expect "MODE SENSE(6), all pages" 0 sg_modes -6 -a "$DEV"
expect "MODE SENSE(10), caching page" 0 sg_modes -p ca "$DEV"
expect "MODE SENSE(10), control page" 0 sg_modes -p co "$DEV"
sg_luns "$DEV" >/tmp/c.out 2>&1
if grep -qi "lun list length = 8" /tmp/c.out; then ok "REPORT LUNS (one LUN)"; else bad "REPORT LUNS"; fi
expect "REPORT SUPPORTED OPERATION CODES" 0 sg_opcodes "$DEV"
expect "START STOP UNIT" 0 sg_start --start "$DEV"
expect "SYNCHRONIZE CACHE(10)" 0 sg_sync "$DEV"
expect "SYNCHRONIZE CACHE(16)" 0 sg_sync --16 "$DEV"
dd if=/dev/urandom of=/tmp/p bs=512 count=8 2>/dev/null
expect "WRITE(16)" 0 sg_dd if=/tmp/p of="$SG" bs=512 seek=1000 count=8 cdbsz=16
rm -f /tmp/r
expect "READ(16)" 0 sg_dd if="$SG" of=/tmp/r bs=512 skip=1000 count=8 cdbsz=16
same "READ(16) returns what WRITE(16) wrote" /tmp/p /tmp/r
rm -f /tmp/r
expect "READ(10)" 0 sg_dd if="$SG" of=/tmp/r bs=512 skip=1000 count=8 cdbsz=10
same "READ(10) returns the same" /tmp/p /tmp/r
expect "VERIFY(16)" 0 sg_verify --16 --lba=1000 --count=8 "$DEV"
printf 'Z%.0s' $(seq 512) >/tmp/one
expect "WRITE SAME(16)" 0 sg_write_same --16 --lba=2000 --num=16 --in=/tmp/one "$DEV"
for _i in $(seq 16); do cat /tmp/one; done >/tmp/want
readback 2000 16
same "WRITE SAME wrote every block" /tmp/want /tmp/r
expect "UNMAP" 0 sg_unmap --lba=4096 --num=64 "$DEV"
expect "GET LBA STATUS" 0 sg_get_lba_status --lba=4096 "$DEV"
sg_dd if="$SG" of=/tmp/old bs=512 skip=3000 count=1 >/dev/null 2>&1
head -c 512 /dev/urandom >/tmp/new
cat /tmp/old /tmp/new >/tmp/cw
expect "COMPARE AND WRITE, equal" 0 sg_compare_and_write --in=/tmp/cw --lba=3000 --num=1 "$DEV"
readback 3000 1
same "COMPARE AND WRITE wrote" /tmp/new /tmp/r
expect "COMPARE AND WRITE, different: MISCOMPARE" 14 sg_compare_and_write --in=/tmp/cw --lba=3000 --num=1 "$DEV"
readback 3000 1
same "a miscompare writes nothing" /tmp/new /tmp/r
# shellcheck disable=SC2046
sense "READ(16) past the last LBA" "out of range" sg_raw -r 512 "$SG" 88 00 $(hex8 "$lbas") 00 00 00 01 00 00
sense "an unknown operation code" "invalid command operation code" sg_raw "$SG" ff 00 00 00 00 00
expect "PERSISTENT RESERVE OUT: register" 0 sg_persist --out --register --param-sark=0x5359 "$DEV"
sg_persist --in -k "$DEV" >/tmp/c.out 2>&1
if grep -q "0x5359" /tmp/c.out; then ok "PERSISTENT RESERVE IN: read keys"; else bad "PR IN read keys"; fi
expect "PERSISTENT RESERVE OUT: reserve (write exclusive)" 0 \
    sg_persist --out --reserve --param-rk=0x5359 --prout-type=1 "$DEV"
sg_persist --in -r "$DEV" >/tmp/c.out 2>&1
if grep -qi "write exclusive" /tmp/c.out; then ok "PERSISTENT RESERVE IN: read reservation"; else bad "PR IN read reservation"; fi
expect "PERSISTENT RESERVE OUT: release" 0 sg_persist --out --release --param-rk=0x5359 --prout-type=1 "$DEV"
expect "PERSISTENT RESERVE OUT: unregister" 0 sg_persist --out --register --param-rk=0x5359 --param-sark=0 "$DEV"
echo "SCSI conformance: $((n - fails))/$n passed"
[ "$fails" -eq 0 ] || die "$fails SCSI conformance checks failed"

fio_verify "$DEV" 16M
max=$(cat /sys/block/sda/queue/discard_max_bytes)
if [ "$max" -gt 0 ]; then
  blkdiscard -o $((40 << 20)) -l $((1 << 20)) "$DEV" || die "blkdiscard failed"
  echo "discard: 1 MiB at 40 MiB discarded (discard_max_bytes=$max)"
fi
echo "VHOST-USER-SCSI CHECK PASSED"
