# spydk's user-space PCIe driver on QEMU's emulated NVMe controller (run by test_nvme_pcie.py):
# nvme-cli under the kernel driver, spydk setup, perf --verify, bdevperf verify on a bdev_nvme
# PCIe controller, hello_world, identify,
# spydk setup reset, and the kernel driver sees the controller again.
# Env: NVME_SERIAL (the -device nvme serial), PERF_SECONDS.
. /etc/guest/lib.sh
use_spydk
modprobe nvme || die "modprobe nvme"
wait_for /dev/nvme0 30 || die "the kernel nvme driver found no controller"
BDF=$(basename "$(readlink /sys/class/nvme/nvme0/device)")
echo "BDF=$BDF"
step "nvme id-ctrl under the kernel driver"
echo "=== ID-CTRL-BEGIN"
nvme id-ctrl /dev/nvme0 -o json || die "nvme id-ctrl"
echo "=== ID-CTRL-END"

step "spydk setup"
HUGEMEM=${HUGEMEM:-64} spydk setup || die "spydk setup failed"
drv=$(basename "$(readlink "/sys/bus/pci/devices/$BDF/driver")")
[ "$drv" = uio_pci_generic ] || die "$BDF is bound to $drv after spydk setup"
[ -e /dev/nvme0 ] && die "the kernel still has /dev/nvme0 after spydk setup"
TRID="trtype:PCIe traddr:$BDF"

step "spydk perf --verify"
spydk perf -r "$TRID" -q 16 -o 4096 -w randrw -M 50 -t "${PERF_SECONDS:-4}" --verify \
  || die "perf failed"

step "spydk bdevperf verify on bdev_nvme_attach_controller -t PCIe"
cat >/tmp/bdev-pcie.json <<EOF
{"subsystems": [{"subsystem": "bdev", "config": [{"method": "bdev_nvme_attach_controller",
 "params": {"name": "Nvme0", "trtype": "PCIe", "traddr": "$BDF"}}]}]}
EOF
spydk bdevperf -c /tmp/bdev-pcie.json -q 16 -o 4096 -w verify -t 3 || die "bdevperf verify on Nvme0n1 failed"

step "spydk hello_world"
spydk hello_world -r "$TRID" >/tmp/hello.out 2>&1; rc=$?
cat /tmp/hello.out
[ "$rc" -eq 0 ] || die "hello_world exited $rc"
grep -qx "Hello world!" /tmp/hello.out || die "hello_world did not read 'Hello world!' back"

step "spydk identify"
echo "=== IDENTIFY-BEGIN"
spydk identify -r "$TRID" || die "identify failed"
echo "=== IDENTIFY-END"

step "spydk setup reset"
spydk setup reset || die "spydk setup reset failed"
wait_for /dev/nvme0 30 || die "the kernel nvme driver did not get the controller back"
nvme id-ctrl /dev/nvme0 | grep -q "^sn *: $NVME_SERIAL" || die "nvme id-ctrl after reset"
# what hello_world wrote (after perf) at LBA 0, read through the kernel driver
wait_for /dev/nvme0n1 30 || die "no /dev/nvme0n1 after reset"
dd if=/dev/nvme0n1 bs=4096 count=1 iflag=direct status=none | head -c 12 | grep -q "Hello world!" \
  || die "the kernel does not read 'Hello world!' at LBA 0"
echo "NVME PCIE CHECK PASSED"
