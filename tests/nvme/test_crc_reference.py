from crc32c import crc32c

from .helpers import ref_crc32c


def test_reference_crc_check_value() -> None:
    # The CRC-32C check value from the Castagnoli catalogue.
    assert ref_crc32c(b"123456789") == 0xE3069283


def test_package_agrees_with_reference_and_is_incremental() -> None:
    data = bytes(range(256)) * 5
    assert crc32c(data) == ref_crc32c(data)
    assert crc32c(data[700:], crc32c(data[:700])) == ref_crc32c(data)
