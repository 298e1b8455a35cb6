"""The hashes carbon and carbon-c-relay place names with: carbon_ch, fnv1a_ch, mmh3_ch, jump.

Each is a pure function of the key, bit for bit as in ``carbon/hashing.py`` and carbon-c-relay's
``consistent-hash.c``. A key that UTF-8 cannot encode (lone surrogates) is hashed anyway, where
carbon would crash. ``mmh3`` is an optional package, imported only when a mmh3 hash is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import md5
from typing import Any

CONSISTENT_HASH_TYPES = ("carbon_ch", "fnv1a_ch", "mmh3_ch")  # what carbonHash() knows


def utf8(key: str) -> bytes:
    """`key` as the bytes the hashes read."""
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: carbon would crash; hash them anyway
        return key.encode("utf-8", "surrogatepass")


def fnv1a_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def fnv1a_64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def carbon_ch(key: str) -> int:
    """carbon's compactHash position: the first 16 bits of md5(key)."""
    d = md5(utf8(key)).digest()
    return d[0] << 8 | d[1]


def fnv1a_ch(key: str) -> int:
    h = fnv1a_32(utf8(key))
    return (h >> 16) ^ (h & 0xFFFF)


def _mmh3() -> Any:
    import mmh3  # optional: only fast-hashing's default hash (or mmh3_ch) needs it

    return mmh3


def mmh3_available() -> bool:
    try:
        _mmh3()
    except ImportError:
        return False
    return True


def hash_function(hash_type: str) -> Callable[[str], int]:
    """carbon.hashing.carbonHash(key, hash_type) as a function of the key."""
    if hash_type == "carbon_ch":
        return carbon_ch
    if hash_type == "fnv1a_ch":
        return fnv1a_ch
    if hash_type == "mmh3_ch":
        mmh3_hash = _mmh3().hash
        return lambda key: mmh3_hash(utf8(key))  # signed 32-bit, seed 0, as carbon's
    raise ValueError(f"expected one of {', '.join(CONSISTENT_HASH_TYPES)}, got {hash_type!r}")


def jump_bucket(key: int, buckets: int) -> int:
    """carbon-c-relay's jump_bucketpos (Lamping & Veach), its double arithmetic included."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (2147483648.0 / ((key >> 33) + 1)))
    return b
