"""`spydk identify`: what spdk_nvme_identify prints about each controller given with -r
(Identify Controller, CAP/VS, and every active namespace), with the same labels."""
from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from spydk.apps.nvme_common import add_transport_args, attached_line, ctrlr_opts, new_loop, trids
from spydk.nvme import spec
from spydk.nvme.host import Controller, NvmeError
from spydk.nvme.host.identify import IdentifyController, IdentifyNamespace


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk identify",
                                description="Print NVMe controller and namespace data (spdk_nvme_identify).")
    p.add_argument("-x", action="store_true", help="also print the raw Identify data in hex")
    p.add_argument("-p", "--core", help=argparse.SUPPRESS)
    p.add_argument("-d", "--mem-size", help=argparse.SUPPRESS)
    add_transport_args(p)
    return p


def yn(b: Any) -> str:
    return "Yes" if b else "No"


def sup(b: Any) -> str:
    return "Supported" if b else "Not Supported"


def _hexdump(data: bytes, out: Any) -> None:
    for off in range(0, len(data), 16):
        row = data[off:off + 16]
        if any(row):
            print(f"{off:08x}  {' '.join(f'{b:02x}' for b in row)}", file=out)


def print_controller(c: Controller, out: Any = None, hexdump: bool = False,
                     feats: dict[Any, int] | None = None) -> None:
    out = out or sys.stdout
    cd = c.cdata
    assert cd is not None
    p = lambda s="": print(s, file=out)  # noqa: E731
    cap, vs = c.cap, c.vs
    mpsmin = (cap >> 48) & 0xF
    p("=====================================================")
    p(attached_line(c))
    p("=====================================================")
    p("Controller Capabilities/Features")
    p("================================")
    p(f"Vendor ID:                             {cd.vid:04x}")
    p(f"Subsystem Vendor ID:                   {cd.ssvid:04x}")
    p(f"Serial Number:                         {cd.sn}")
    p(f"Model Number:                          {cd.mn}")
    p(f"Firmware Version:                      {cd.fr}")
    p(f"Recommended Arb Burst:                 {cd.rab}")
    ieee = cd.ieee
    p(f"IEEE OUI Identifier:                   {ieee & 0xFF:02x} {(ieee >> 8) & 0xFF:02x} {ieee >> 16:02x}")
    p("Multi-path I/O")
    p(f"  May have multiple subsystem ports:   {yn(cd.cmic & 1)}")
    p(f"  May have multiple controllers:       {yn(cd.cmic & 2)}")
    p(f"  Associated with SR-IOV VF:           {yn(cd.cmic & 4)}")
    p("Max Data Transfer Size:                " + (str(1 << (12 + mpsmin + cd.mdts)) if cd.mdts else "Unlimited"))
    p(f"Max Number of Namespaces:              {cd.nn}")
    p(f"Max Number of I/O Queues:              {c.num_io_queues_granted}")
    ter = f".{vs & 0xFF}" if vs & 0xFF else ""
    p(f"NVMe Specification Version (VS):       {vs >> 16}.{(vs >> 8) & 0xFF}{ter}")
    if cd.ver:
        ter = f".{cd.ver & 0xFF}" if cd.ver & 0xFF else ""
        p(f"NVMe Specification Version (Identify): {cd.ver >> 16}.{(cd.ver >> 8) & 0xFF}{ter}")
    p(f"Maximum Queue Entries:                 {(cap & 0xFFFF) + 1}")
    p(f"Contiguous Queues Required:            {yn(cap >> 16 & 1)}")
    p("Arbitration Mechanisms Supported")
    p(f"  Weighted Round Robin:                {sup(cap >> 17 & 1)}")
    p(f"  Vendor Specific:                     {sup(cap >> 18 & 1)}")
    p(f"Reset Timeout:                         {500 * ((cap >> 24) & 0xFF)} ms")
    p(f"Doorbell Stride:                       {4 << ((cap >> 32) & 0xF)} bytes")
    p(f"NVM Subsystem Reset:                   {sup(cap >> 36 & 1)}")
    p("Command Sets Supported")
    p(f"  NVM Command Set:                     {sup(cap >> 37 & 1)}")
    p(f"Boot Partition:                        {sup(cap >> 45 & 1)}")
    p(f"Memory Page Size Minimum:              {4096 << mpsmin} bytes")
    p(f"Memory Page Size Maximum:              {4096 << ((cap >> 52) & 0xF)} bytes")
    p(f"Persistent Memory Region:              {sup(cap >> 56 & 1)}")
    p("Optional Asynchronous Events Supported")
    p(f"  Namespace Attribute Notices:         {sup(cd.oaes >> 8 & 1)}")
    p(f"  Firmware Activation Notices:         {sup(cd.oaes >> 9 & 1)}")
    p(f"  ANA Change Notices:                  {sup(cd.oaes >> 11 & 1)}")
    p(f"  PLE Aggregate Log Change Notices:    {sup(cd.oaes >> 12 & 1)}")
    p(f"  LBA Status Info Alert Notices:       {sup(cd.oaes >> 13 & 1)}")
    p(f"  EGE Aggregate Log Change Notices:    {sup(cd.oaes >> 14 & 1)}")
    p(f"  Normal NVM Subsystem Shutdown event: {sup(cd.oaes >> 15 & 1)}")
    p(f"  Zone Descriptor Change Notices:      {sup(cd.oaes >> 27 & 1)}")
    p(f"  Discovery Log Change Notices:        {sup(cd.oaes >> 31 & 1)}")
    p("Controller Attributes")
    p(f"  128-bit Host Identifier:             {sup(cd.ctratt & 1)}")
    p(f"  Non-Operational Permissive Mode:     {sup(cd.ctratt >> 1 & 1)}")
    p(f"  NVM Sets:                            {sup(cd.ctratt >> 2 & 1)}")
    p(f"  Read Recovery Levels:                {sup(cd.ctratt >> 3 & 1)}")
    p(f"  Endurance Groups:                    {sup(cd.ctratt >> 4 & 1)}")
    p(f"  Predictable Latency Mode:            {sup(cd.ctratt >> 5 & 1)}")
    p(f"  Traffic Based Keep ALive:            {sup(cd.ctratt >> 6 & 1)}")
    p(f"  Namespace Granularity:               {sup(cd.ctratt >> 7 & 1)}")
    p(f"  SQ Associations:                     {sup(cd.ctratt >> 8 & 1)}")
    p(f"  UUID List:                           {sup(cd.ctratt >> 9 & 1)}")
    p(f"  Multi-Domain Subsystem:              {sup(cd.ctratt >> 10 & 1)}")
    p(f"  Fixed Capacity Management:           {sup(cd.ctratt >> 11 & 1)}")
    p(f"  Variable Capacity Management:        {sup(cd.ctratt >> 12 & 1)}")
    p(f"  Delete Endurance Group:              {sup(cd.ctratt >> 13 & 1)}")
    p(f"  Delete NVM Set:                      {sup(cd.ctratt >> 14 & 1)}")
    p(f"  Extended LBA Formats Supported:      {sup(cd.ctratt >> 15 & 1)}")
    p(f"  Flexible Data Placement Supported:   {sup(cd.ctratt >> 19 & 1)}")
    p()
    p("Controller Memory Buffer Support")
    p("================================")
    p("Supported:                             No")
    p()
    p("Persistent Memory Region Support")
    p("================================")
    p("Supported:                             No")
    p()
    _admin_attrs(cd, p)
    _nvm_attrs(cd, p)
    if hexdump:
        p("Identify Controller data (hex)")
        _hexdump(cd.raw, out)
        p()
    feats = feats or {}
    arb = feats.get(spec.FeatureId.ARBITRATION)
    if arb is not None:
        ab = arb & 0x7
        p("Arbitration")
        p("===========")
        p(f"Arbitration Burst:           {'no limit' if ab == 7 else 1 << ab}")
        if (cap >> 17) & 1:
            p(f"Low Priority Weight:         {((arb >> 8) & 0xFF) + 1}")
            p(f"Medium Priority Weight:      {((arb >> 16) & 0xFF) + 1}")
            p(f"High Priority Weight:        {((arb >> 24) & 0xFF) + 1}")
        p()
    nq = feats.get(spec.FeatureId.NUMBER_OF_QUEUES)
    if nq is not None:
        p("Number of Queues")
        p("================")
        p(f"Number of I/O Submission Queues:      {(nq & 0xFFFF) + 1}")
        p(f"Number of I/O Completion Queues:      {(nq >> 16) + 1}")
        p()
    p("Active Namespaces")
    p("=================")
    for nsid, ns in sorted(c.namespaces.items()):
        print_namespace(nsid, ns.data, cd, p, feats.get(("tler", nsid)))


def _admin_attrs(cd: IdentifyController, p: Any) -> None:
    o = cd.oacs
    p("Admin Command Set Attributes")
    p("============================")
    p(f"Security Send/Receive:                 {sup(o & 1)}")
    p(f"Format NVM:                            {sup(o >> 1 & 1)}")
    p(f"Firmware Activate/Download:            {sup(o >> 2 & 1)}")
    p(f"Namespace Management:                  {sup(o >> 3 & 1)}")
    p(f"Device Self-Test:                      {sup(o >> 4 & 1)}")
    p(f"Directives:                            {sup(o >> 5 & 1)}")
    p(f"NVMe-MI:                               {sup(o >> 6 & 1)}")
    p(f"Virtualization Management:             {sup(o >> 7 & 1)}")
    p(f"Doorbell Buffer Config:                {sup(o >> 8 & 1)}")
    p(f"Get LBA Status Capability:             {sup(o >> 9 & 1)}")
    p(f"Command & Feature Lockdown Capability: {sup(o >> 10 & 1)}")
    p(f"Abort Command Limit:                   {cd.acl + 1}")
    p(f"Async Event Request Limit:             {cd.aerl + 1}")
    slots = (cd.frmw >> 1) & 0x7
    p(f"Number of Firmware Slots:              {slots if o >> 2 & 1 else 'N/A'}")
    p(f"Firmware Slot 1 Read-Only:             {yn(cd.frmw & 1) if o >> 2 & 1 else 'N/A'}")
    p(f"Firmware Activation Without Reset:     {yn(cd.frmw >> 4 & 1) if o >> 2 & 1 else 'N/A'}")
    p(f"Multiple Update Detection Support:     {yn(cd.frmw >> 5 & 1) if o >> 2 & 1 else 'N/A'}")
    fwug = {0: "No Information Provided", 0xFF: "No Restriction"}.get(cd.fwug, f"{cd.fwug * 4} KiB")
    p(f"Firmware Update Granularity:           {fwug}")
    p(f"Per-Namespace SMART Log:               {yn(cd.lpa & 1)}")
    if cd.cmic & 0x8:
        p("Asymmetric Namespace Access Log Page:  Supported")
        p(f"ANA Transition Time                 :  {cd.anatt} sec")
        p()
        a = cd.anacap
        p("Asymmetric Namespace Access Capabilities")
        p(f"  ANA Optimized State               : {sup(a & 1)}")
        p(f"  ANA Non-Optimized State           : {sup(a >> 1 & 1)}")
        p(f"  ANA Inaccessible State            : {sup(a >> 2 & 1)}")
        p(f"  ANA Persistent Loss State         : {sup(a >> 3 & 1)}")
        p(f"  ANA Change State                  : {sup(a >> 4 & 1)}")
        p(f"  ANAGRPID is not changed           : {yn(a >> 6 & 1)}")
        p(f"  Non-Zero ANAGRPID for NS Mgmt Cmd : {sup(a >> 7 & 1)}")
        p()
        p(f"ANA Group Identifier Maximum        : {cd.anagrpmax}")
        p(f"Number of ANA Group Identifiers     : {cd.nanagrpid}")
    else:
        p("Asymmetric Namespace Access Log Page:  Not Supported")
    p(f"Subsystem NQN:                         {cd.subnqn}")
    p(f"Command Effects Log Page:              {sup(cd.lpa >> 1 & 1)}")
    p(f"Get Log Page Extended Data:            {sup(cd.lpa >> 2 & 1)}")
    p(f"Telemetry Log Pages:                   {sup(cd.lpa >> 3 & 1)}")
    p(f"Persistent Event Log Pages:            {sup(cd.lpa >> 4 & 1)}")
    lplp = cd.lpa >> 5 & 1
    p(f"Supported Log Pages Log Page:          {'Supported' if lplp else 'May Support'}")
    p(f"Commands Supported & Effects Log Page: {'Supported' if lplp else 'Not Supported'}")
    p(f"Feature Identifiers & Effects Log Page:{'Supported' if lplp else 'May Support'}")
    p(f"NVMe-MI Commands & Effects Log Page:   {'Supported' if lplp else 'May Support'}")
    p(f"Data Area 4 for Telemetry Log:         {sup(cd.lpa >> 6 & 1)}")
    p(f"Error Log Page Entries Supported:      {cd.elpe + 1}")
    if cd.kas:
        p("Keep Alive:                            Supported")
        p(f"Keep Alive Granularity:                {cd.kas * 100} ms")
    else:
        p("Keep Alive:                            Not Supported")
    p()


def _nvm_attrs(cd: IdentifyController, p: Any) -> None:
    n = cd.oncs
    p("NVM Command Set Attributes")
    p("==========================")
    p("Submission Queue Entry Size")
    p(f"  Max:                       {1 << (cd.sqes >> 4)}")
    p(f"  Min:                       {1 << (cd.sqes & 0xF)}")
    p("Completion Queue Entry Size")
    p(f"  Max:                       {1 << (cd.cqes >> 4)}")
    p(f"  Min:                       {1 << (cd.cqes & 0xF)}")
    p(f"Number of Namespaces:        {cd.nn}")
    p(f"Compare Command:             {sup(n & 1)}")
    p(f"Write Uncorrectable Command: {sup(n >> 1 & 1)}")
    p(f"Dataset Management Command:  {sup(n >> 2 & 1)}")
    p(f"Write Zeroes Command:        {sup(n >> 3 & 1)}")
    p(f"Set Features Save Field:     {sup(n >> 4 & 1)}")
    p(f"Reservations:                {sup(n >> 5 & 1)}")
    p(f"Timestamp:                   {sup(n >> 6 & 1)}")
    p(f"Copy:                        {sup(n >> 8 & 1)}")
    p(f"Volatile Write Cache:        {'Present' if cd.vwc & 1 else 'Not Present'}")
    p(f"Atomic Write Unit (Normal):  {cd.awun + 1}")
    p(f"Atomic Write Unit (PFail):   {cd.awupf + 1}")
    p(f"Atomic Compare & Write Unit: {cd.acwu + 1}")
    p(f"Fused Compare & Write:       {sup(cd.fuses & 1)}")
    p("Scatter-Gather List")
    p(f"  SGL Command Set:           {sup(cd.sgls & 3)}")
    p(f"  SGL Keyed:                 {sup(cd.sgls >> 2 & 1)}")
    p(f"  SGL Bit Bucket Descriptor: {sup(cd.sgls >> 16 & 1)}")
    p(f"  SGL Metadata Pointer:      {sup(cd.sgls >> 17 & 1)}")
    p(f"  Oversized SGL:             {sup(cd.sgls >> 18 & 1)}")
    p(f"  SGL Metadata Address:      {sup(cd.sgls >> 19 & 1)}")
    p(f"  SGL Offset:                {sup(cd.sgls >> 20 & 1)}")
    p(f"  Transport SGL Data Block:  {sup(cd.sgls >> 21 & 1)}")
    p("Replay Protected Memory Block:  Not Supported")
    p()


def print_namespace(nsid: int, d: IdentifyNamespace, cd: IdentifyController, p: Any,
                    tler: int | None = None) -> None:
    bs = d.block_size
    gib = lambda n: n * bs // (1 << 30)  # noqa: E731
    p(f"Namespace ID:{nsid}")
    if tler is not None:
        t = tler & 0xFFFF
        p("Error Recovery Timeout:                " + ("Unlimited" if t == 0 else f"{t * 100} milliseconds"))
    p("Command Set Identifier:                NVM (00h)")
    p(f"Deallocate:                            {sup(cd.oncs >> 2 & 1)}")
    p(f"Deallocated/Unwritten Error:           {sup(d.nsfeat >> 2 & 1)}")
    rv = d.dlfeat & 0x7
    p("Deallocated Read Value:                " + {1: "All 0x00", 2: "All 0xFF"}.get(rv, "Unknown"))
    p(f"Deallocate in Write Zeroes:            {sup(d.dlfeat >> 3 & 1)}")
    p(f"Deallocated Guard Field:               {'CRC for Read Value' if d.dlfeat >> 4 & 1 else '0xFFFF'}")
    p(f"Flush:                                 {sup(cd.vwc & 1)}")
    p(f"Reservation:                           {sup(cd.oncs >> 5 & 1)}")
    p(f"Namespace Sharing Capabilities:        {'Multiple Controllers' if d.nmic & 1 else 'Private'}")
    p(f"Size (in LBAs):                        {d.nsze} ({gib(d.nsze)}GiB)")
    p(f"Capacity (in LBAs):                    {d.ncap} ({gib(d.ncap)}GiB)")
    p(f"Utilization (in LBAs):                 {d.nuse} ({gib(d.nuse)}GiB)")
    if any(d.nguid):
        p(f"NGUID:                                 {d.nguid.hex().upper()}")
        p(f"UUID:                                  {uuid.UUID(bytes=d.nguid)}")
    if any(d.eui64):
        p(f"EUI64:                                 {d.eui64.hex().upper()}")
    p(f"Thin Provisioning:                     {sup(d.nsfeat & 1)}")
    p(f"Per-NS Atomic Units:                   {yn(d.nsfeat >> 1 & 1)}")
    if d.nsfeat >> 1 & 1:
        if d.nawun:
            p(f"  Atomic Write Unit (Normal):          {d.nawun + 1}")
        if d.nawupf:
            p(f"  Atomic Write Unit (PFail):           {d.nawupf + 1}")
        if d.npwg:
            p(f"  Preferred Write Granularity:         {d.npwg + 1}")
        if d.nacwu:
            p(f"  Atomic Compare & Write Unit:         {d.nacwu + 1}")
        p(f"  Atomic Boundary Size (Normal):       {d.nabsn}")
        p(f"  Atomic Boundary Size (PFail):        {d.nabspf}")
        p(f"  Atomic Boundary Offset:              {d.nabo}")
    if cd.oncs >> 8 & 1:
        p(f"Maximum Single Source Range Length:    {d.mssrl}")
        p(f"Maximum Copy Length:                   {d.mcl}")
        p(f"Maximum Source Range Count:            {d.msrc + 1}")
    p(f"NGUID/EUI64 Never Reused:              {yn(d.nsfeat >> 3 & 1)}")
    if cd.cmic & 0x8:
        p(f"ANA group ID:                          {d.anagrpid}")
    p(f"Namespace Write Protected:             {yn(d.nsattr & 1)}")
    p(f"Number of LBA Formats:                 {d.nlbaf + 1}")
    p(f"Current LBA Format:                    LBA Format #{d.flbas & 0xF:02d}")
    for i, (ms, size) in enumerate(d.lba_formats):
        p(f"LBA Format #{i:02d}: Data Size: {size:5d}  Metadata Size: {ms:5d}")
    p()


async def read_features(c: Controller) -> dict[Any, int]:
    """Get Features for the sections that need them; a feature the controller refuses is left out."""
    out: dict[Any, int] = {}
    for fid in (spec.FeatureId.ARBITRATION, spec.FeatureId.NUMBER_OF_QUEUES):
        st, dw0, _ = await c.admin(spec.AdminOpcode.GET_FEATURES, cdw10=fid, check=False)
        if not st:
            out[fid] = dw0
    for nsid in c.namespaces:
        st, dw0, _ = await c.admin(spec.AdminOpcode.GET_FEATURES, nsid=nsid,
                                   cdw10=spec.FeatureId.ERROR_RECOVERY, check=False)
        if not st:
            out[("tler", nsid)] = dw0
    return out


async def run_identify(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    rc = 0
    for t in trids(args, "spydk identify"):
        # Ask for as many I/O queues as SPDK's driver does by default; connect none.
        c = Controller(t, ctrlr_opts(args, t, arm_aer=False, num_io_queues=1024, connect_io_queues=0))
        try:
            await c.connect()
            feats = await read_features(c)
        except (NvmeError, ConnectionError) as e:
            print(f"spydk identify: cannot attach {t}: {e}", file=sys.stderr)
            rc = 1
            continue
        try:
            print_controller(c, out, args.x, feats)
        finally:
            await c.detach()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loop = new_loop()
    try:
        return loop.run_until_complete(run_identify(args))
    finally:
        loop.close()
