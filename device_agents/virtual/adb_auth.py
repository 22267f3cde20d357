"""ADB authentication on the device side, as adbd does it on a phone with ``ro.adb.secure=1``.

The formats follow AOSP:
- ``adbd_auth_verify`` (adb ``daemon/auth.cpp``): each line of an ``adb_keys`` file is
  ``<base64 key> <comment>`` (split on space or tab); the base64 decodes to exactly
  ``ANDROID_PUBKEY_ENCODED_SIZE`` (524) bytes; the signature is checked with
  ``RSA_verify(NID_sha1, token, 20, sig)``: PKCS#1 v1.5 over the 20-byte token taken as a SHA-1
  digest (the host signs with ``RSA_sign(NID_sha1, token, ...)``).
- ``android_pubkey_decode`` (libcrypto_utils ``android_pubkey.cpp``): the 524 bytes are
  ``uint32 modulus_size_words (64)``, ``uint32 n0inv``, ``uint8 modulus[256]`` little-endian,
  ``uint8 rr[256]`` (R^2 mod N) little-endian, ``uint32 exponent``; all integers little-endian.
- The trusted keys file is read again at every verification, as adbd reads ``adb_keys`` each
  time, so a key authorized while the device runs counts from the next connection on.

Only verification lives here (pure integer arithmetic: the device needs no crypto library).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bench.virtual.auth")

# AUTH message types (adb_auth.h).
ADB_AUTH_TOKEN = 1
ADB_AUTH_SIGNATURE = 2
ADB_AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

ANDROID_PUBKEY_MODULUS_SIZE = 256
ANDROID_PUBKEY_MODULUS_SIZE_WORDS = ANDROID_PUBKEY_MODULUS_SIZE // 4
ANDROID_PUBKEY_ENCODED_SIZE = 3 * 4 + 2 * ANDROID_PUBKEY_MODULUS_SIZE
_PUBKEY = struct.Struct(f"<II{ANDROID_PUBKEY_MODULUS_SIZE}s{ANDROID_PUBKEY_MODULUS_SIZE}sI")
# DER DigestInfo header of a SHA-1 digest (RFC 8017 section 9.2, note 1).
SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")

# Where a virtual device keeps the keys it trusts: beside its sandbox, never inside it, so
# nothing pushed to the device can add a key.
TRUSTED_KEYS_FILE = "adb_keys"


class KeyFormatError(ValueError):
    """A line that is not an adb public key."""


@dataclass(frozen=True)
class AdbPublicKey:
    modulus: int
    exponent: int
    comment: str = ""

    def verify(self, token: bytes, signature: bytes) -> bool:
        """RSA_verify(NID_sha1, token, signature) with this key."""
        if len(signature) != ANDROID_PUBKEY_MODULUS_SIZE or len(token) != TOKEN_SIZE:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.modulus:
            return False
        decoded = pow(s, self.exponent, self.modulus).to_bytes(ANDROID_PUBKEY_MODULUS_SIZE, "big")
        payload = SHA1_DIGEST_INFO + token
        expected = (b"\x00\x01" + b"\xff" * (ANDROID_PUBKEY_MODULUS_SIZE - 3 - len(payload))
                    + b"\x00" + payload)
        return hmac.compare_digest(decoded, expected)


def parse_public_key(line: str) -> AdbPublicKey:
    """One ``adbkey.pub`` / ``adb_keys`` line: ``<base64 of 524 bytes> [comment]``."""
    fields = line.replace("\t", " ").strip().split(" ", 1)
    if not fields or not fields[0]:
        raise KeyFormatError("empty line")
    try:
        raw = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("not base64") from None
    if len(raw) != ANDROID_PUBKEY_ENCODED_SIZE:
        raise KeyFormatError(f"decodes to {len(raw)} bytes, not {ANDROID_PUBKEY_ENCODED_SIZE}")
    words, _n0inv, modulus, _rr, exponent = _PUBKEY.unpack(raw)
    if words != ANDROID_PUBKEY_MODULUS_SIZE_WORDS:
        raise KeyFormatError(f"modulus of {words} words, not {ANDROID_PUBKEY_MODULUS_SIZE_WORDS}")
    n = int.from_bytes(modulus, "little")
    if exponent < 3 or n.bit_length() < ANDROID_PUBKEY_MODULUS_SIZE * 8 - 8:
        raise KeyFormatError("not an RSA-2048 public key")
    return AdbPublicKey(n, exponent, fields[1].strip() if len(fields) > 1 else "")


def encode_public_key(modulus: int, exponent: int, comment: str = "") -> str:
    """The ``adbkey.pub`` line adb writes for an RSA-2048 key (android_pubkey_encode)."""
    r32 = 1 << 32
    n0inv = (-pow(modulus, -1, r32)) % r32
    rr = pow(1 << (ANDROID_PUBKEY_MODULUS_SIZE * 8), 2, modulus)
    raw = _PUBKEY.pack(ANDROID_PUBKEY_MODULUS_SIZE_WORDS, n0inv,
                       modulus.to_bytes(ANDROID_PUBKEY_MODULUS_SIZE, "little"),
                       rr.to_bytes(ANDROID_PUBKEY_MODULUS_SIZE, "little"), exponent)
    text = base64.b64encode(raw).decode()
    return f"{text} {comment}" if comment else text


def read_key_lines(path: Path) -> list[str]:
    """The key lines of an ``adbkey.pub`` or ``adb_keys`` file; KeyFormatError names a bad one."""
    lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            parse_public_key(line)
        except KeyFormatError as exc:
            raise KeyFormatError(f"line {number}: {exc}") from None
    return lines


class TrustedKeys:
    """The keys a device accepts, read from its ``adb_keys`` file at each verification."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def keys(self) -> list[AdbPublicKey]:
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return []  # no file: no key is trusted, every host stays unauthorized
        keys = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                keys.append(parse_public_key(line))
            except KeyFormatError as exc:  # adbd logs and skips a bad line too
                log.warning("%s: skipping invalid key (%s)", self.path, exc)
        return keys

    def verify(self, token: bytes, signature: bytes) -> AdbPublicKey | None:
        """The trusted key that made ``signature`` over ``token``, or None."""
        for key in self.keys():
            if key.verify(token, signature):
                return key
        return None
