"""SCSI layer: CDB execution (SPC-4/SBC-3) over a block backend."""
