"""The one exception hierarchy of Bucky.

Codecs raise only ProtocolError subclasses: DecodeError (or AuthError) for bad bytes, whatever
the bytes; EncodeError when the caller asks for something the protocol cannot carry (a value out
of range, a name with a NUL, an unknown security level). Configuration problems are ConfigError
with a one-line, user-facing message.
"""

from __future__ import annotations


class BuckyError(Exception):
    """Base of every error Bucky raises on purpose."""


class ConfigError(BuckyError):
    """A configuration value is wrong; str(err) is the one line shown to the operator."""


class ProtocolError(BuckyError):
    """Bytes from the wire could not be decoded.

    `reason` is a short, stable slug (e.g. "truncated-part") used as a self-metric name and for
    rate-limited logging; `detail` is free text for humans.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecodeError(ProtocolError):
    """Malformed data."""


class AuthError(ProtocolError):
    """Signature or encryption could not be verified, or the security level forbids the data."""


class EncodeError(ProtocolError, ValueError):
    """The caller's records or arguments cannot be encoded (misuse, never the wire's fault).

    Also a ValueError, so code written against the classic APIs (which raised ValueError) works."""

    def __init__(self, detail: str) -> None:
        super().__init__("cannot-encode", detail)

    def __str__(self) -> str:
        return self.detail
