#!/usr/bin/env python3
"""Boot Debian's own kernel under QEMU (TCG) with a small initramfs and run a shell
script inside it, so that storage targets on this machine meet real Linux initiators
(nvme-tcp, iscsi_tcp, virtio-blk over vhost-user, nbd) and stock Debian tools.

Usable as a command (``tests/interop/guest_run.py --help``) and as a module (the
pytest fixtures in conftest.py call :func:`prepare` and :func:`run`).  Python 3.11
standard library only.  See docs/interop.md.

Nothing binary lives in the repository: on first use the kernel and the userland
``.deb``s are fetched with ``apt-get download`` into a per-machine cache (outside the
repository, see :func:`default_cache_dir`), extracted, and turned into an initramfs,
under a file lock so that parallel runs build it once.

Command exit status: the guest script's exit status; 124 on timeout; 125 when the guest
ended without reporting a status (boot failure, kernel panic, QEMU error); 2 on usage or
preparation errors.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import lzma
import os
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

HOST_IP = "10.0.2.2"     # QEMU user networking: the host's 127.0.0.1 as the guest sees it
GUEST_IP = "10.0.2.15"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:6b1c2e9a-5d0f-4c3b-9e7a-1f2d3c4b5a60"
HOSTID = "6b1c2e9a-5d0f-4c3b-9e7a-1f2d3c4b5a60"
INITIATOR_IQN = "iqn.2024-01.org.spydk.guest:initiator"
EXIT_MARKER = re.compile(r"^GUEST-EXIT=(\d+)\s*$")
READY_MARKER = "GUEST-READY"
EXIT_TIMEOUT = 124
EXIT_NO_STATUS = 125

# Userland packages whose binaries go into the initramfs (plus their library closure).
TOP_PACKAGES = ["busybox-static", "nvme-cli", "libnvme1", "fio", "open-iscsi",
                "sg3-utils", "nbd-client", "bash", "coreutils", "zlib1g", "libc6",
                "e2fsprogs"]
# Binaries to copy (paths inside the packages; /sbin and /usr/sbin are both tried).
BINARIES = ["usr/sbin/nvme", "usr/bin/fio", "sbin/iscsiadm", "sbin/iscsid",
            "sbin/iscsi-iname", "sbin/iscsistart", "sbin/nbd-client", "bin/bash",
            "bin/dd", "sbin/mke2fs", "sbin/e2fsck", "sbin/mkfs.ext4", "sbin/fsck.ext4"]
BINARY_GLOBS = ["usr/bin/sg_*", "usr/bin/sginfo"]
# Kernel modules loaded at boot, in this order (dependencies come from modules.dep).
MODULES = ["crc32c_generic", "crc32c_intel", "crct10dif_generic", "crct10dif_pclmul",
           "crc64_rocksoft_generic",
           "virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "virtio_scsi",
           "nvme_tcp", "scsi_transport_iscsi", "libiscsi", "iscsi_tcp", "sd_mod", "sg",
           "nbd", "ext4"]
# In the image (modprobe-able) but not loaded at boot: the kernel NVMe PCI driver and uio for
# the user-space PCIe tests (loading nvme at boot would claim the device first), 9p to mount
# the host's Python and the project (run(..., shares=spydk_shares())).
ON_DEMAND_MODULES = ["nvme", "uio_pci_generic", "9pnet_virtio", "9p"]
# Loaded as well when the kernel has them: what NVMe in-band authentication (DH-HMAC-CHAP) needs
# (the 6.12 kernel, see KERNELS); absent or built in elsewhere.
AUTH_MODULES = ["nvme_keyring", "nvme_auth", "hmac", "sha256_generic", "sha512_generic",
                "kpp", "dh_generic"]
# Kernels the harness can boot: "default" is Debian 12's own (6.1); "6.12" is Debian 12's
# newer kernel package, the first with NVME_HOST_AUTH (6.1 cannot authenticate as a host).
KERNELS = {"default": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}
HOST_TOOLS = {"apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "ldd": "libc-bin",
              "depmod": "kmod", "qemu-system-x86_64": "qemu-system-x86"}

BUILD_FORMAT = "spydk-1"  # bump to force an initramfs rebuild


class GuestError(Exception):
    """The harness cannot do its job (missing tool, failed download, bad argument)."""


def _log(msg: str) -> None:
    print(f"guest-run: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path | None = None, quiet: bool = False) -> None:
    try:
        subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL if quiet else None)
    except (OSError, subprocess.CalledProcessError) as e:
        raise GuestError(f"{shlex.join(cmd)}: {e}") from e


def default_cache_dir() -> Path:
    """$SPYDK_GUEST_CACHE, else /var/cache/spydk-guest for root, else ~/.cache/spydk-guest."""
    env = os.environ.get("SPYDK_GUEST_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/spydk-guest")
    return Path.home() / ".cache" / "spydk-guest"


def missing_host_tools() -> list[str]:
    """Host tools the harness needs that are not installed, as 'tool (package)'."""
    return [f"{t} ({p})" for t, p in HOST_TOOLS.items() if shutil.which(t) is None]


# --------------------------------------------------------------------------- cache

class _Cache:
    def __init__(self, root: Path, kernel: str = "default") -> None:
        if kernel not in KERNELS:
            raise GuestError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
        self.root = root
        self.kernel_choice = kernel
        self.debs = root / "debs"
        # extracted kernel package (one folder per kernel choice)
        self.kroot = root / ("kroot" if kernel == "default" else f"kroot-{kernel}")
        self.sysroot = root / "sysroot"    # extracted userland packages
        self.stage = root / "initramfs-root"

    def apt_download(self, pkgs: list[str]) -> None:
        self.debs.mkdir(parents=True, exist_ok=True)
        # APT::Sandbox::User=root: the _apt user may not be able to write the cache folder.
        _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *pkgs],
             cwd=self.debs, quiet=True)

    def kernel(self) -> str:
        done = self.kroot / ".done"
        if not done.exists():
            pkg = _resolve_kernel_package(KERNELS[self.kernel_choice])
            _log(f"downloading {pkg}")
            for old in self.debs.glob("linux-image-*.deb"):
                old.unlink()
            self.apt_download([pkg])
            deb = next(self.debs.glob("linux-image-*.deb"))
            shutil.rmtree(self.kroot, ignore_errors=True)
            self.kroot.mkdir(parents=True)
            _run(["dpkg-deb", "-x", str(deb), str(self.kroot)])
            deb.unlink()  # re-downloadable; keeps the cache smaller
            done.write_text(pkg + "\n")
        versions = sorted(p.name for p in (self.kroot / "lib/modules").iterdir())
        if len(versions) != 1:
            raise GuestError(f"expected one kernel in {self.kroot}/lib/modules, found {versions}")
        return versions[0]

    def userland(self) -> None:
        done = self.sysroot / ".done"
        top = self.sysroot / ".top"
        if done.exists() and top.exists() and top.read_text() == " ".join(TOP_PACKAGES):
            return
        _log("resolving the userland package closure")
        out = subprocess.run(
            ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *TOP_PACKAGES],
            capture_output=True, text=True, check=True).stdout
        names = {ln.strip() for ln in out.splitlines() if ln and not ln.startswith((" ", "<"))}
        # Only shared-library packages are needed, so that ldd resolves inside the sysroot.
        pkgs = sorted({n for n in names if n.startswith("lib") and not
                       n.startswith(("libpython", "libperl", "libpam", "libsemanage"))}
                      | set(TOP_PACKAGES))
        _log(f"downloading {len(pkgs)} userland packages")
        for old in self.debs.glob("*.deb"):
            if not old.name.startswith("linux-image-"):
                old.unlink()
        self.apt_download(pkgs)
        shutil.rmtree(self.sysroot, ignore_errors=True)
        self.sysroot.mkdir(parents=True)
        for deb in sorted(self.debs.glob("*.deb")):
            if not deb.name.startswith("linux-image-"):
                _run(["dpkg-deb", "-x", str(deb), str(self.sysroot)])
                deb.unlink()
        done.write_text("\n".join(pkgs) + "\n")
        top.write_text(" ".join(TOP_PACKAGES))


def _resolve_kernel_package(meta: str = "linux-image-amd64") -> str:
    pkg = os.environ.get("GUEST_KERNEL_PKG")
    if pkg and meta == "linux-image-amd64":
        return pkg

    def resolve() -> str | None:
        out = subprocess.run(["apt-cache", "depends", meta],
                             capture_output=True, text=True).stdout
        m = re.search(r"Depends:\s+(linux-image-\S+-amd64)", out)
        return m.group(1) if m else None

    found = resolve()
    if found is None and os.geteuid() == 0:
        # A fresh machine may have no package lists yet.
        _log("linux-image-amd64 unknown to apt: running apt-get update")
        _run(["apt-get", "update", "-qq"])
        found = resolve()
    if found is None:
        raise GuestError(f"cannot resolve {meta} (run 'apt-get update' first, or set "
                         "GUEST_KERNEL_PKG=linux-image-<ver>-amd64)")
    return found


# --------------------------------------------------------------------------- initramfs

INIT = r"""#!/bin/sh
# /init (busybox sh): set the guest up, run /guest/script, report GUEST-EXIT=<status>.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/lock /tmp /var/tmp /root
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/lock/iscsi
mount -t configfs configfs /sys/kernel/config 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ln -sf /proc/self/fd /dev/fd; ln -sf fd/0 /dev/stdin; ln -sf fd/1 /dev/stdout; ln -sf fd/2 /dev/stderr
hostname guest
KVER=$(uname -r)
while read -r m; do
  insmod "/lib/modules/$KVER/$m" 2>/tmp/insmod.err || {
    grep -q 'File exists' /tmp/insmod.err || { echo "guest-init: insmod $m failed:"; cat /tmp/insmod.err; }
  }
done < /etc/guest/modules.load
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
  ip link set eth0 up
  # No default route on purpose: the guest reaches 10.0.2.0/24 only, i.e. the host's
  # loopback through QEMU (10.0.2.2), never another network.
  ip addr add __GUEST_IP__/24 dev eth0
else
  echo "guest-init: no eth0"
fi
export HOST_IP=__HOST_IP__ GUEST_IP=__GUEST_IP__
[ -f /guest/env ] && . /guest/env
echo "__READY__ uptime=$(cut -d' ' -f1 /proc/uptime)"
rc=127
if [ -f /guest/script ]; then
  cd /root
  chmod +x /guest/script
  if [ "$(head -c2 /guest/script)" = "#!" ]; then
    /guest/script </dev/null; rc=$?
  else
    bash /guest/script </dev/null; rc=$?
  fi
else
  echo "guest-init: no /guest/script"
fi
sync
echo
echo "GUEST-EXIT=$rc"
poweroff -f
sleep 5
"""

LIB_SH = r"""# Guest helpers: source with  . /etc/guest/lib.sh
# HOST_IP (10.0.2.2) is the host's 127.0.0.1 seen through QEMU user networking.

die() { echo "FAIL: $*"; exit 1; }
# step MSG: a section header with the guest's uptime, to see where the time goes.
step() { echo "== [$(cut -d' ' -f1 /proc/uptime)] $*"; }

# wait_for PATH [SECONDS]: wait until PATH exists (default 30 s).
wait_for() {
  _p=$1; _t=${2:-30}; _i=0
  while [ ! -e "$_p" ]; do
    _i=$((_i + 1)); [ "$_i" -gt $((_t * 10)) ] && return 1; sleep 0.1
  done
}

# start_iscsid: start open-iscsi's iscsid in the background (once) and wait until its
# control socket (abstract unix socket ISCSIADM_ABSTRACT_NAMESPACE) is up.
start_iscsid() {
  [ -n "$ISCSID_PID" ] && return 0
  iscsid -f ${ISCSID_ARGS:-} >/tmp/iscsid.log 2>&1 &
  ISCSID_PID=$!
  _i=0
  until grep -q ISCSIADM_ABSTRACT_NAMESPACE /proc/net/unix; do
    _i=$((_i + 1)); [ "$_i" -gt 100 ] && { cat /tmp/iscsid.log; return 1; }
    sleep 0.1
  done
}

# pattern_check DEV [MiB] [TAG]: write a pattern unique to this run (TAG, default the
# boot time and a random number) with O_DIRECT dd, read it back, compare.
pattern_check() {
  _d=$1; _n=${2:-8}; _tag=${3:-$(cut -d' ' -f1 /proc/uptime)-$RANDOM}
  awk -v n="$_n" -v tag="$_tag" 'BEGIN{s=sprintf("%1015s",""); gsub(/ /,"x",s);
    t=substr(tag "                ", 1, 16);
    for(i=0;i<n*1024;i++) printf "%08d%s%s\n", i, t, substr(s, 17)}' > /tmp/pattern
  [ "$(stat -c %s /tmp/pattern)" -eq $((_n * 1048576)) ] || die "pattern size"
  dd if=/tmp/pattern of="$_d" bs=1M count="$_n" oflag=direct conv=fsync status=none || die "dd write $_d"
  dd if="$_d" of=/tmp/readback bs=1M count="$_n" iflag=direct status=none || die "dd read $_d"
  cmp /tmp/pattern /tmp/readback || die "pattern mismatch on $_d"
  echo "pattern_check: $_n MiB written and read back OK on $_d (tag $_tag)"
}

# fio_verify DEV [SIZE]: 4 KiB random writes at queue depth 8, then a crc32c verify pass.
fio_verify() {
  fio --eta=never --name=verify --filename="$1" --direct=1 --ioengine=libaio --iodepth=8 \
      --rw=randwrite --bs=4k --size="${2:-16M}" --verify=crc32c --verify_fatal=1 --do_verify=1 \
      --group_reporting >/tmp/fio.out 2>&1; _rc=$?
  grep -E 'IOPS|err=' /tmp/fio.out
  [ "$_rc" -eq 0 ] || { cat /tmp/fio.out; die "fio verify on $1 failed"; }
}

# fio_randread DEV SECONDS: 4 KiB random reads at queue depth 16 (skipped for 0 seconds).
fio_randread() {
  [ "${2:-0}" -gt 0 ] || return 0
  fio --eta=never --name=randread --filename="$1" --direct=1 --ioengine=libaio --iodepth=16 \
      --rw=randread --bs=4k --size=32M --time_based --runtime="$2" \
      --group_reporting >/tmp/fio.out 2>&1 || { cat /tmp/fio.out; die "fio randread on $1 failed"; }
  grep -E 'IOPS|lat \(usec\): min' /tmp/fio.out
}

# use_spydk: mount the host's /usr, the project and its site-packages (9p shares that
# run(..., shares=spydk_shares()) adds) and define the `spydk` command, run by the host's own
# Python (its own ld.so and libraries, so nothing depends on the guest's userland).
use_spydk() {
  [ -n "$SPYDK_PY" ] || die "use_spydk: the guest was started without the spydk shares"
  modprobe 9pnet_virtio && modprobe 9p || die "use_spydk: no 9p modules"
  for t in hostusr:/host/usr pyprefix:/host/py spydk:/spydk pysite:/host/pysite; do
    mkdir -p "${t#*:}"
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 "${t%%:*}" "${t#*:}" \
      || die "use_spydk: mount of 9p share ${t%%:*} failed"
  done
  export PYTHONHOME=/host/py PYTHONPATH=/spydk:/host/pysite PYTHONDONTWRITEBYTECODE=1
  spydk() {
    /host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path \
      /host/py/lib:/host/usr/lib/x86_64-linux-gnu "/host/py/$SPYDK_PY" -c \
      'import sys; from spydk.apps.main import main; sys.exit(main(sys.argv[1:]))' "$@"
  }
}

# fs_check DEV: mkfs.ext4, mount, write and read back a file, unmount, fsck -f.
fs_check() {
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1" || die "mkfs.ext4 $1"
  mkdir -p /mnt/t
  mount -t ext4 "$1" /mnt/t || die "mount $1"
  dd if=/dev/urandom of=/mnt/t/data bs=64k count=64 status=none || die "write a file"
  sha256sum /mnt/t/data | cut -d' ' -f1 > /tmp/fs.sum
  sync; umount /mnt/t || die "umount"
  mount -t ext4 "$1" /mnt/t || die "remount $1"
  [ "$(sha256sum /mnt/t/data | cut -d' ' -f1)" = "$(cat /tmp/fs.sum)" ] || die "file changed across remount"
  umount /mnt/t || die "umount"
  fsck.ext4 -f -n "$1" || die "fsck.ext4 found errors on $1"
  echo "fs_check: ext4 on $1 OK"
}
"""


def _guest_path(p: str) -> str:
    """Map a /bin, /sbin, /lib, /lib64 path to its merged-/usr location."""
    p = "/" + p.lstrip("/")
    for top in ("/bin/", "/sbin/", "/lib/", "/lib64/"):
        if p.startswith(top):
            return "/usr" + p
    return p


class _InitramfsBuilder:
    def __init__(self, cache: _Cache, kver: str) -> None:
        self.c = cache
        self.kver = kver

    def stage_copy(self, src: Path, gpath: str) -> None:
        dst = self.c.stage / _guest_path(gpath).lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        real = os.path.realpath(src)
        shutil.copyfile(real, dst)
        os.chmod(dst, stat.S_IMODE(os.stat(real).st_mode))

    def copy_with_libs(self, binaries: list[Path]) -> None:
        sysroot = self.c.sysroot
        libdirs = sorted({root for root, _d, files in os.walk(sysroot)
                          if any(".so" in f for f in files)})
        env = dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs))
        libs: set[str] = set()
        for b in binaries:
            self.stage_copy(b, "/" + str(b.relative_to(sysroot)))
            if b.read_bytes()[:4] != b"\x7fELF":
                continue
            res = subprocess.run(["ldd", str(b)], capture_output=True, text=True, env=env)
            if "not a dynamic executable" in res.stdout + res.stderr:
                continue
            for ln in res.stdout.splitlines():
                if "not found" in ln:
                    raise GuestError(f"ldd {b}: {ln.strip()}")
                m = re.match(r"\s*\S+ => (\S+) \(", ln)
                if m:
                    libs.add(m.group(1))
        for path in sorted(libs):
            p = Path(path)
            try:
                gp = "/" + str(p.relative_to(sysroot))
            except ValueError:
                gp = path  # resolved from the host (same Debian release)
            self.stage_copy(p, gp)
        ld = sysroot / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        self.stage_copy(ld, "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        self.stage_copy(ld, "/lib64/ld-linux-x86-64.so.2")

    def module_closure(self, names: list[str] | None = None) -> list[str]:
        kroot = self.c.kroot
        mdir = kroot / "lib/modules" / self.kver
        if not (mdir / "modules.dep").exists():
            _run(["depmod", "-b", str(kroot), self.kver])
        deps: dict[str, list[str]] = {}
        byname: dict[str, str] = {}
        for ln in (mdir / "modules.dep").read_text().splitlines():
            mod, _, rest = ln.partition(":")
            deps[mod] = rest.split()
            base = os.path.basename(mod).removesuffix(".xz").removesuffix(".ko")
            byname[base.replace("-", "_")] = mod
        order: list[str] = []
        extra = AUTH_MODULES if self.c.kernel_choice != "default" else []
        for name in [*MODULES, *extra] if names is None else names:
            found = byname.get(name)
            if found is None:
                if name not in AUTH_MODULES:
                    _log(f"warning: module {name} not found (built in or absent), skipped")
                continue
            # modules.dep lists dependencies so that the last one must be loaded first.
            for m in [*reversed(deps[found]), found]:
                if m not in order:
                    order.append(m)
        return order

    def build(self, out_path: Path) -> None:
        c = self.c
        shutil.rmtree(c.stage, ignore_errors=True)
        c.stage.mkdir(parents=True)
        stage = c.stage
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev",
                  "run", "tmp", "root", "var/tmp", "var/lib", "mnt", "guest", "etc/guest"):
            (stage / d).mkdir(parents=True, exist_ok=True)
        for top in ("bin", "sbin", "lib", "lib64"):
            os.symlink(f"usr/{top}", stage / top)
        (stage / "var/run").symlink_to("../run")
        (stage / "var/lock").symlink_to("../run/lock")

        # busybox (static) and its applet links, not shadowing the real binaries.
        bb = c.sysroot / "bin/busybox"
        self.stage_copy(bb, "/bin/busybox")
        binaries = []
        for rel in BINARIES:
            cands = [c.sysroot / rel, c.sysroot / "usr" / rel,
                     c.sysroot / rel.replace("usr/", "", 1)]
            hit = next((p for p in cands if p.exists()), None)
            if hit is None:
                raise GuestError(f"binary {rel} not found in {c.sysroot}")
            binaries.append(hit)
        for g in BINARY_GLOBS:
            binaries.extend(sorted(c.sysroot.glob(g)))
        self.copy_with_libs(binaries)
        real = {b.name for b in binaries}
        applets = subprocess.run([str(bb), "--list-full"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for a in applets:
            dst = stage / _guest_path("/" + a).lstrip("/")
            if os.path.basename(a) in real or dst.exists() or dst.is_symlink():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/usr/bin/busybox", dst)

        # configuration files
        if (c.sysroot / "etc/iscsi/iscsid.conf").exists():
            self.stage_copy(c.sysroot / "etc/iscsi/iscsid.conf", "/etc/iscsi/iscsid.conf")
        for d in ("etc/iscsi/nodes", "etc/iscsi/send_targets", "etc/iscsi/ifaces",
                  "var/lib/iscsi", "etc/nvme"):
            (stage / d).mkdir(parents=True, exist_ok=True)
        (stage / "etc/iscsi/initiatorname.iscsi").write_text(f"InitiatorName={INITIATOR_IQN}\n")
        (stage / "etc/nvme/hostnqn").write_text(HOSTNQN + "\n")
        (stage / "etc/nvme/hostid").write_text(HOSTID + "\n")
        (stage / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (stage / "etc/group").write_text("root:x:0:\ndisk:x:6:\n")
        (stage / "etc/hosts").write_text("127.0.0.1 localhost guest\n")
        (stage / "etc/ld.so.conf").write_text(
            "/usr/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu/ceph\n/usr/lib\n")
        (stage / "etc/guest/lib.sh").write_text(LIB_SH)
        init = (INIT.replace("__GUEST_IP__", GUEST_IP).replace("__HOST_IP__", HOST_IP)
                .replace("__READY__", READY_MARKER))
        (stage / "init").write_text(init)
        os.chmod(stage / "init", 0o755)
        if os.geteuid() == 0:
            subprocess.run(["ldconfig", "-r", str(stage)], check=False)

        # kernel modules, with a depmod'ed tree so that modprobe works in the guest
        mods = self.module_closure()
        boot = set(mods)
        mods += [m for m in self.module_closure(ON_DEMAND_MODULES) if m not in boot]
        src = c.kroot / "lib/modules" / self.kver
        dst = stage / "usr/lib/modules" / self.kver
        loaded = []
        for m in mods:
            (dst / m).parent.mkdir(parents=True, exist_ok=True)
            if m.endswith(".xz"):
                # Newer Debian kernels compress their modules; busybox insmod takes plain ones.
                plain = m.removesuffix(".xz")
                with open(dst / plain, "wb") as f:
                    f.write(lzma.decompress((src / m).read_bytes()))
                if m in boot:
                    loaded.append(plain)
            else:
                shutil.copyfile(src / m, dst / m)
                if m in boot:
                    loaded.append(m)
        mods = loaded
        for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (src / f).exists():
                shutil.copyfile(src / f, dst / f)
        _run(["depmod", "-b", str(stage), self.kver])
        (stage / "etc/guest/modules.load").write_text("\n".join(mods) + "\n")

        tmp = out_path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            w = CpioWriter(out)
            w.add_tree(stage)
            w.add_node("dev/console", stat.S_IFCHR | 0o600, 5, 1)
            w.add_node("dev/null", stat.S_IFCHR | 0o666, 1, 3)
            w.finish()
        os.replace(tmp, out_path)
        shutil.rmtree(c.stage, ignore_errors=True)
        _log(f"initramfs: {out_path.stat().st_size / 1048576:.0f} MiB, {len(mods)} modules")


class CpioWriter:
    """Minimal 'newc' cpio writer (the format the kernel's initramfs unpacker reads)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1000

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1,
               rmaj: int = 0, rmin: int = 0) -> None:
        self.ino += 1
        nameb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(nameb), 0]
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.out.write(hdr + nameb)
        self.out.write(b"\0" * (-(len(hdr) + len(nameb)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def add_node(self, name: str, mode: int, rmaj: int, rmin: int) -> None:
        self._entry(name, mode, rmaj=rmaj, rmin=rmin)

    def add_tree(self, root: Path, prefix: str = "") -> None:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            base = prefix + ("" if rel == "." else rel + "/")
            for name in dirnames + sorted(filenames):
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                arc = base + name
                if stat.S_ISLNK(st.st_mode):
                    self._entry(arc, stat.S_IFLNK | 0o777, os.readlink(p).encode())
                elif stat.S_ISDIR(st.st_mode):
                    self.add_dir(arc, stat.S_IMODE(st.st_mode))
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        self.add_file(arc, f.read(), stat.S_IMODE(st.st_mode))

    def finish(self) -> None:
        self._entry("TRAILER!!!", 0)
        self.out.write(b"\0" * (-self.out.tell() % 512))


@dataclass(frozen=True)
class GuestImage:
    """A prepared kernel + base initramfs, ready to boot."""

    kver: str
    kernel: Path
    initramfs: Path


def _build_key(kver: str, sysroot_done: bytes) -> str:
    # Only what changes the image goes into the key, so that checkouts whose harness
    # differs elsewhere still share one cached initramfs.
    h = hashlib.sha256()
    for part in (BUILD_FORMAT, repr(TOP_PACKAGES), repr(BINARIES), repr(BINARY_GLOBS),
                 repr(MODULES), repr(ON_DEMAND_MODULES), INIT, LIB_SH, HOSTNQN, INITIATOR_IQN, kver):
        h.update(part.encode() + b"\0")
    h.update(sysroot_done)
    if not kver.startswith("6.1."):  # the default image's key stays as it was
        h.update(repr(AUTH_MODULES).encode())
    return h.hexdigest()[:16]


def prepare(cache_dir: Path | None = None, kernel: str = "default") -> GuestImage:
    """Fetch the kernel and userland and build the initramfs, once per machine.

    Holds an exclusive lock on the cache while it works, so concurrent callers wait
    for one build instead of racing.  Raises GuestError when a host tool is missing.
    """
    missing = missing_host_tools()
    if missing:
        raise GuestError("missing host tools: " + ", ".join(missing) +
                         " (scripts/setup.sh installs them from scripts/debian-packages.txt)")
    c = _Cache(cache_dir or default_cache_dir(), kernel)
    c.root.mkdir(parents=True, exist_ok=True)
    with open(c.root / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        kver = c.kernel()
        c.userland()
        key = _build_key(kver, (c.sysroot / ".done").read_bytes())
        cpio = c.root / f"initramfs-{key}.cpio"
        if not cpio.exists():
            _log("building the initramfs")
            _InitramfsBuilder(c, kver).build(cpio)
            # Drop images no run has used for a day. Two checkouts of different harness
            # versions (a clone in CI beside a working tree) share the cache, so an image
            # in use by the other one must survive this build.
            stale = time.time() - 86400
            for old in c.root.glob("initramfs-*.cpio"):
                if old != cpio and old.stat().st_mtime < stale:
                    old.unlink()
        os.utime(cpio)  # marks the image as in use (see the clean-up above)
    return GuestImage(kver, c.kroot / "boot" / f"vmlinuz-{kver}", cpio)


# --------------------------------------------------------------------------- run

@dataclass
class GuestResult:
    """What one guest run produced.  ``rc`` is the guest script's exit status."""

    rc: int | None
    console: str
    timed_out: bool
    boot_s: float | None      # QEMU start to GUEST-READY
    total_s: float
    qemu_cmd: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        """The command's exit status: rc, or 124 (timeout) / 125 (no status reported)."""
        if self.timed_out:
            return EXIT_TIMEOUT
        return EXIT_NO_STATUS if self.rc is None else self.rc


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _run_cpio(path: Path, script: bytes, env: Mapping[str, str], adds: Iterable[Path]) -> None:
    with open(path, "wb") as out:
        w = CpioWriter(out)
        w.add_dir("guest")
        w.add_file("guest/script", script, 0o755)
        lines = []
        for k, v in env.items():
            if not _ENV_NAME.fullmatch(k):
                raise GuestError(f"bad guest environment variable name {k!r}")
            lines.append(f"export {k}={shlex.quote(str(v))}")
        w.add_file("guest/env", ("\n".join(lines) + "\n").encode())
        adds = list(adds)
        if adds:
            w.add_dir("guest/files")
            for p in adds:
                if p.is_dir():
                    w.add_dir("guest/files/" + p.name)
                    w.add_tree(p, "guest/files/" + p.name + "/")
                else:
                    w.add_file("guest/files/" + p.name, p.read_bytes(),
                               stat.S_IMODE(p.stat().st_mode))
        w.finish()


def spydk_shares(project: Path | None = None) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """The 9p shares and environment for ``use_spydk`` in lib.sh: the Python running this (its
    installation prefix), the host's /usr (the libraries it links), the project, and this
    interpreter's site-packages (the project's dependencies). Pass them as
    run(..., shares=..., env=...)."""
    import sysconfig
    prefix = Path(os.path.realpath(sys.base_prefix))
    py = Path(os.path.realpath(sys.executable))
    try:
        rel = py.relative_to(prefix)
    except ValueError:
        raise GuestError(f"the Python {py} is not inside its prefix {prefix}") from None
    project = project or Path(__file__).resolve().parents[2]
    site = Path(sysconfig.get_paths()["purelib"])
    return ([("hostusr", Path("/usr")), ("pyprefix", prefix), ("spydk", project),
             ("pysite", site)], {"SPYDK_PY": str(rel)})


def run(image: GuestImage, script: bytes | str, *, env: Mapping[str, str] | None = None,
        timeout: float = 600, vhost_user_blk: Sequence[str | Path] = (),
        vhost_user_scsi: Sequence[str | Path] = (), vhost_reconnect: int = 0,
        disks: Sequence[str | Path] = (), adds: Sequence[str | Path] = (),
        nvme: Sequence[tuple[str | Path, str]] = (), shares: Sequence[tuple[str, Path]] = (),
        mem: int = 1024, smp: int = 1, append: str = "", kernel_log: bool = False,
        qemu_args: Sequence[str] = (), on_line: Callable[[str], None] | None = None) -> GuestResult:
    """Boot ``image``, run ``script`` in the guest and return its exit status and console.

    ``on_line`` is called with each console line as it arrives (streaming).
    vhost-user-blk devices appear as /dev/vda, /dev/vdb, ... in order, then ``disks``.
    ``nvme``: (raw file, serial) pairs, each an emulated NVMe controller (``-device nvme``).
    ``shares``: (tag, host folder) pairs exported read-only over 9p (virtio-9p).
    """
    if isinstance(script, str):
        script = script.encode()
    for s in (*vhost_user_blk, *vhost_user_scsi):
        if not Path(s).is_socket():
            raise GuestError(f"vhost-user socket {s}: not a unix socket (is the target running?)")
    tmpdir = Path(tempfile.mkdtemp(prefix="spydk-guest."))
    qemu: subprocess.Popen[bytes] | None = None
    try:
        initrd = tmpdir / "initrd.cpio"
        run_cpio = tmpdir / "run.cpio"
        _run_cpio(run_cpio, script, env or {}, [Path(a) for a in adds])
        # The kernel unpacks concatenated cpio archives in order: base image, then this run.
        with open(initrd, "wb") as out:
            for part in (image.initramfs, run_cpio):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)

        cmdline = "console=ttyS0 panic=-1 " + ("" if kernel_log else "quiet ") + append
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max",
               "-m", str(mem), "-smp", str(smp),
               "-nodefaults", "-no-user-config", "-display", "none",
               "-serial", "stdio", "-monitor", "none", "-no-reboot",
               "-kernel", str(image.kernel), "-initrd", str(initrd), "-append", cmdline.strip(),
               # user networking: the guest reaches the host loopback as 10.0.2.2; no IPv6.
               "-netdev", "user,id=n0,ipv6=off",
               "-device", "virtio-net-pci,netdev=n0",
               "-device", "virtio-rng-pci"]
        if vhost_user_blk or vhost_user_scsi:
            # vhost-user backends map guest RAM: it must be a shared memfd.
            cmd += ["-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on",
                    "-numa", "node,memdev=mem"]
            # reconnect=N: QEMU redials a target that went away every N seconds
            rc_opt = f",reconnect={vhost_reconnect}" if vhost_reconnect else ""
            for i, s in enumerate(vhost_user_blk):
                cmd += ["-chardev", f"socket,id=vub{i},path={s}{rc_opt}",
                        "-device", f"vhost-user-blk-pci,chardev=vub{i}"]
            for i, s in enumerate(vhost_user_scsi):
                cmd += ["-chardev", f"socket,id=vus{i},path={s}{rc_opt}",
                        "-device", f"vhost-user-scsi-pci,chardev=vus{i}"]
        for i, d in enumerate(disks):
            cmd += ["-drive", f"file={d},if=none,id=disk{i},format=raw,cache=none,aio=threads",
                    "-device", f"virtio-blk-pci,drive=disk{i}"]
        for i, (f, serial) in enumerate(nvme):
            cmd += ["-drive", f"file={f},if=none,id=nvm{i},format=raw,cache=none,aio=threads",
                    "-device", f"nvme,serial={serial},drive=nvm{i}"]
        for tag, path in shares:
            cmd += ["-virtfs", f"local,path={path},mount_tag={tag},security_model=none,"
                    "readonly=on,multidevs=remap"]
        cmd += list(qemu_args)

        t_start = time.monotonic()
        qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert qemu.stdout is not None
        fd = qemu.stdout.fileno()
        deadline = t_start + timeout
        rc: int | None = None
        t_ready: float | None = None
        console: list[str] = []
        buf = b""
        timed_out = False

        def take(raw: bytes) -> None:
            nonlocal rc, t_ready
            text = raw.rstrip(b"\r").decode("utf-8", "replace")
            console.append(text)
            if on_line is not None:
                on_line(text)
            if t_ready is None and text.startswith(READY_MARKER):
                t_ready = time.monotonic()
            m = EXIT_MARKER.match(text)
            if m:
                rc = int(m.group(1))

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                take(raw)
        if buf:
            take(buf)
        if timed_out:
            _log(f"timeout after {timeout:g} s: killing QEMU (pid {qemu.pid})")
            qemu.kill()
        try:
            qemu.wait(timeout=30)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
        t_end = time.monotonic()
        return GuestResult(rc=rc, console="\n".join(console) + "\n", timed_out=timed_out,
                           boot_s=None if t_ready is None else t_ready - t_start,
                           total_s=t_end - t_start, qemu_cmd=cmd)
    finally:
        if qemu is not None and qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        shutil.rmtree(tmpdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Boot Debian's kernel under QEMU TCG and run a guest shell script.")
    ap.add_argument("script", nargs="?", default="-",
                    help="guest script file ('-' or omitted: read it from stdin)")
    ap.add_argument("--mem", type=int, default=1024, help="guest memory in MiB (default 1024)")
    ap.add_argument("--smp", type=int, default=1, help="guest vCPUs (default 1)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="kill the guest after this many seconds (default 600); exit 124")
    ap.add_argument("--vhost-user-blk", action="append", default=[], metavar="SOCKET",
                    help="attach a vhost-user-blk device served on this unix socket "
                         "(repeatable; the guest sees /dev/vda, /dev/vdb, ...)")
    ap.add_argument("--disk", action="append", default=[], metavar="FILE",
                    help="attach a raw file as a plain virtio-blk disk (repeatable)")
    ap.add_argument("--nvme", action="append", default=[], metavar="FILE[,SERIAL]",
                    help="attach a raw file as a QEMU emulated NVMe controller (repeatable)")
    ap.add_argument("--spydk", action="store_true",
                    help="share the host's Python and this project over 9p (use_spydk in lib.sh)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="export a variable to the guest script (repeatable)")
    ap.add_argument("--add", action="append", default=[], metavar="PATH",
                    help="copy a host file or folder into the guest under /guest/files/")
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--kernel-log", action="store_true",
                    help="do not pass 'quiet' (show all kernel messages)")
    ap.add_argument("--qemu-arg", action="append", default=[], metavar="ARG",
                    help="extra raw QEMU argument (repeatable)")
    ap.add_argument("--cache", type=Path, default=None,
                    help=f"cache folder (default {default_cache_dir()})")
    ap.add_argument("--kernel", choices=sorted(KERNELS), default="default",
                    help="which Debian 12 kernel to boot: default (6.1) or 6.12 (has "
                         "NVMe in-band authentication)")
    ap.add_argument("--prepare", action="store_true",
                    help="only prepare the cache and the initramfs, then exit")
    ap.add_argument("--print-cmd", action="store_true", help="print the QEMU command line")
    args = ap.parse_args(argv)

    env: dict[str, str] = {}
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep:
            ap.error(f"--env expects NAME=VALUE, got {kv!r}")
        env[k] = v
    t0 = time.monotonic()
    try:
        image = prepare(args.cache, args.kernel)
        if args.prepare:
            _log(f"ready in {time.monotonic() - t0:.1f} s: kernel {image.kver}, "
                 f"initramfs {image.initramfs}")
            return 0
        script = (sys.stdin.buffer.read() if args.script == "-"
                  else Path(args.script).read_bytes())
        out = sys.stdout

        def echo(line: str) -> None:
            out.write(line + "\n")
            out.flush()

        t_prep = time.monotonic() - t0
        nvme = [(f.partition(",")[0], f.partition(",")[2] or f"spydk{i:04d}")
                for i, f in enumerate(args.nvme)]
        shares: list[tuple[str, Path]] = []
        if args.spydk:
            shares, senv = spydk_shares()
            env = {**senv, **env}
        res = run(image, script, env=env, timeout=args.timeout, nvme=nvme, shares=shares,
                  vhost_user_blk=args.vhost_user_blk, disks=args.disk, adds=args.add,
                  mem=args.mem, smp=args.smp, append=args.append,
                  kernel_log=args.kernel_log, qemu_args=args.qemu_arg, on_line=echo)
    except GuestError as e:
        _log(f"error: {e}")
        return 2
    if args.print_cmd:
        _log("qemu: " + shlex.join(res.qemu_cmd))
    boot = "n/a" if res.boot_s is None else f"{res.boot_s:.1f} s"
    _log(f"boot {boot}, total {res.total_s:.1f} s (prep {t_prep:.1f} s), "
         f"guest exit {'none' if res.rc is None else res.rc}")
    if res.rc is None and not res.timed_out:
        _log("the guest did not report an exit status (see the console output above)")
    return res.status


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
