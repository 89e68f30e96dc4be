"""spydk: the Storage Performance Development Kit, in Python."""

__version__ = "0.1.0"
# What spdk_get_version reports: SPDK's shape, our own version string.
SPDK_COMPAT_VERSION = "v24.01"
