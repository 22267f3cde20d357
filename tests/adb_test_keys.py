"""An RSA-2048 adb key pair made in pure Python, for tests that play the host side of ADB
authentication by hand (the real adb signs with its own key; this one stands for "some other
computer"). Signing follows the host's ``RSA_sign(NID_sha1, token, 20, ...)``: PKCS#1 v1.5 over
the token taken as a SHA-1 digest."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from device_agents.virtual.adb_auth import (ANDROID_PUBKEY_MODULUS_SIZE, SHA1_DIGEST_INFO,
                                            encode_public_key)

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p ** 0.5) + 1, 2))]


def _probably_prime(n: int, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if _probably_prime(candidate):
            return candidate


@dataclass(frozen=True)
class AdbTestKey:
    modulus: int
    exponent: int
    private_exponent: int
    p: int
    q: int

    def public_line(self, comment: str = "tester@elsewhere") -> str:
        return encode_public_key(self.modulus, self.exponent, comment)

    def sign(self, token: bytes) -> bytes:
        payload = SHA1_DIGEST_INFO + token
        padded = (b"\x00\x01" + b"\xff" * (ANDROID_PUBKEY_MODULUS_SIZE - 3 - len(payload))
                  + b"\x00" + payload)
        # By the Chinese remainder theorem (as RSA libraries sign): about 4x faster in Python.
        m, d = int.from_bytes(padded, "big"), self.private_exponent
        sp, sq = pow(m, d % (self.p - 1), self.p), pow(m, d % (self.q - 1), self.q)
        signature = sq + self.q * ((pow(self.q, -1, self.p) * (sp - sq)) % self.p)
        return signature.to_bytes(ANDROID_PUBKEY_MODULUS_SIZE, "big")


def new_adb_test_key() -> AdbTestKey:
    exponent = 65537
    while True:
        p, q = _prime(1024), _prime(1024)
        n, phi = p * q, (p - 1) * (q - 1)
        if p != q and n.bit_length() == 2048 and phi % exponent:
            return AdbTestKey(n, exponent, pow(exponent, -1, phi), p, q)
