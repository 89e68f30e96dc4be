"""NBD: a sans-IO NBD protocol codec, an NBD network server exporting bdevs, and SPDK's
kernel NBD export (nbd_start_disk) where the host has /dev/nbdX."""
