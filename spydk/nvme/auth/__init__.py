"""NVMe in-band authentication shared by hosts and the target: DH-HMAC-CHAP secrets, key
transformation, responses, the RFC 7919 DH groups and the host side of the exchange."""
