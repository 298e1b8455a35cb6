"""Cryptography of the collectd network protocol: signature and encryption parts, auth files.

What this module is for: the byte-level primitives behind collectd's SecurityLevel Sign and
Encrypt (src/network.c), and the AuthFile reader (src/utils_fbhash.c). The part-walking decoder
in bucky.protocol.collectd calls these; it owns the decisions (security levels, errors).

Rules:
- Sans-I/O: bytes in, bytes out. No sockets, clocks, logging or config; the random IV comes
  from a caller-supplied function.
- Sign (part 0x0200): HMAC-SHA256, key = the password bytes, message = username || payload,
  where the payload is everything after the signature part. The MAC is compared in constant
  time.
- Encrypt (part 0x0210): AES-256 in OFB mode (a stream mode: no padding), key = SHA-256 of the
  password, a fresh 16-byte IV per datagram, plaintext = SHA-1(payload) || payload.
- Usernames are UTF-8 on our side; collectd treats them as C strings.
"""

from __future__ import annotations

import hmac
import struct
from hashlib import sha1, sha256

from Crypto.Cipher import AES

from bucky.errors import EncodeError

SIGNATURE_PART = 0x0200
ENCRYPTION_PART = 0x0210

SIGNATURE_HEADER_SIZE = 36  # type, length, 32-byte MAC; the username follows
ENCRYPTION_HEADER_SIZE = 42  # type, length, ulen, 16-byte IV, 20-byte SHA-1; + username
MAX_USERNAME_BYTES = 64  # collectd's sender reserves 106 = 42 + 64 bytes for the header
_IV_SIZE = 16
_SHA1_SIZE = 20

_SIGNATURE_HEAD = struct.Struct(">HH")
_ENCRYPTION_HEAD = struct.Struct(">HHH")


SECURITY_LEVELS = {"none": 0, "sign": 1, "encrypt": 2}


def parse_security_level(level: int | str) -> int:
    """0/1/2 or collectd's spellings None/Sign/Encrypt (any case); ValueError otherwise."""
    if isinstance(level, str):
        key = level.strip().lower()
        if key in SECURITY_LEVELS:
            return SECURITY_LEVELS[key]
        if key.isdigit():
            level = int(key)
    if isinstance(level, int) and not isinstance(level, bool) and level in SECURITY_LEVELS.values():
        return level
    raise EncodeError('expected 0, 1, 2 or "None", "Sign", "Encrypt"')


def signature_matches(
    mac: bytes, username: bytes, payload: bytes | memoryview, password: bytes
) -> bool:
    """True when `mac` is HMAC-SHA256(password, username || payload)."""
    expected = hmac.new(password, username, sha256)
    expected.update(payload)
    return hmac.compare_digest(expected.digest(), mac)


def decrypt_payload(iv: bytes, ciphertext: bytes, password: bytes) -> bytes | None:
    """Decrypt an encryption part's body; the payload, or None when its SHA-1 does not match.

    `ciphertext` must hold at least the 20-byte checksum (the decoder checks the part length).
    """
    plain = AES.new(sha256(password).digest(), AES.MODE_OFB, iv=iv).decrypt(ciphertext)
    payload = plain[_SHA1_SIZE:]
    if not hmac.compare_digest(sha1(payload).digest(), plain[:_SHA1_SIZE]):
        return None
    return payload


def sign_datagram(payload: bytes, username: bytes, password: bytes) -> bytes:
    """Prefix `payload` (a part sequence) with a signature part, as collectd's Sign does."""
    mac = hmac.new(password, username + payload, sha256).digest()
    head = _SIGNATURE_HEAD.pack(SIGNATURE_PART, SIGNATURE_HEADER_SIZE + len(username))
    return b"".join((head, mac, username, payload))


def encrypt_datagram(payload: bytes, username: bytes, password: bytes, iv: bytes) -> bytes:
    """Wrap `payload` (a part sequence) in one encryption part, as collectd's Encrypt does."""
    if len(iv) != _IV_SIZE:
        raise EncodeError(f"the IV must be {_IV_SIZE} bytes, got {len(iv)}")
    cipher = AES.new(sha256(password).digest(), AES.MODE_OFB, iv=iv)
    ciphertext = cipher.encrypt(sha1(payload).digest() + payload)
    length = ENCRYPTION_HEADER_SIZE + len(username) + len(payload)
    if length > 0xFFFF:
        raise EncodeError("payload too large for one encryption part")
    head = _ENCRYPTION_HEAD.pack(ENCRYPTION_PART, length, len(username))
    return b"".join((head, username, iv, ciphertext))


# Whitespace as C's isspace() sees it in the "C" locale: the auth file is read byte-wise there.
_C_SPACE = " \t\n\v\f\r"


def parse_auth_file(text: str) -> dict[str, bytes]:
    """Parse a collectd AuthFile: one `user: password` per line (utils_fbhash.c semantics).

    Per line: trailing CR/LF removed, leading whitespace skipped, blank lines and lines starting
    with `#` ignored, lines without a colon or without a password ignored. The user is the text
    before the first colon (not right-trimmed: "bob :pw" names user "bob "); the password is the
    text after it with leading whitespace skipped and trailing whitespace kept. The first line
    for a user wins. Passwords are returned as UTF-8 bytes, the HMAC/AES key material.
    """
    users: dict[str, bytes] = {}
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r\n").lstrip(_C_SPACE)
        if not line or line[0] == "#":
            continue
        user, colon, password = line.partition(":")
        if not colon:
            continue
        password = password.lstrip(_C_SPACE)
        if not password:
            continue
        users.setdefault(user, password.encode("utf-8"))
    return users
