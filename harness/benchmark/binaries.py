"""Which benchmark_model binary a device gets, by its ABI."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import device_agents
from harness.config import KNOWN_ABIS
from harness.errors import DeviceError, UserError

SHIPPED_DIR = Path(device_agents.__file__).resolve().parent / "bin"


def shipped_binary(abi: str) -> Path | None:
    path = SHIPPED_DIR / abi / "benchmark_model"
    return path if path.is_file() else None


def binary_for_abi(abi: str | None, configured: dict[str, str],
                   pinned_sha256: dict[str, str] | None = None) -> Path:
    """The configured binary for `abi`, else the one bench ships (x86_64 for virtual devices).

    `pinned_sha256` (ABI -> sha256, from [lab.binaries]) refuses a binary whose content differs:
    a lab compares numbers across nights only if every night ran the same tool.
    """
    if not abi:
        raise DeviceError("device did not report ro.product.cpu.abi")
    if abi in configured:
        path = Path(configured[abi]).expanduser()
        if not path.is_file():
            raise UserError(f"benchmark_model for {abi}: {path} is not a file; "
                            f"fix the path in --binary {abi}=PATH or [binaries] in bench.toml")
    else:
        path = shipped_binary(abi)
        if path is None:
            raise DeviceError(f"no benchmark_model for ABI {abi}: give one with "
                              f"--binary {abi}=PATH or [binaries] {abi} = \"PATH\" in bench.toml")
    expected = (pinned_sha256 or {}).get(abi)
    if expected:
        verify_binary_sha256(abi, path, expected)
    return path


def verify_binary_sha256(abi: str, path: Path, expected_sha256: str) -> None:
    actual = file_sha256(path)
    if actual != expected_sha256.lower():
        raise UserError(f"benchmark_model for {abi}: {path} has sha256 {actual} but "
                        f"[lab.binaries.{abi}] sha256 is {expected_sha256.lower()}; "
                        "use the pinned binary or update the sha256 in bench.toml")


def file_sha256(path: Path) -> str:
    stat = Path(path).stat()
    # Keyed on size and mtime so a binary replaced in place is hashed again.
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_binary_options(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        abi, sep, path = value.partition("=")
        if not sep or not abi or not path:
            raise UserError(f"--binary {value}: expected ABI=PATH, e.g. --binary arm64-v8a=./benchmark_model")
        if abi not in KNOWN_ABIS:
            raise UserError(f"--binary {value}: unknown ABI {abi}; use one of {', '.join(KNOWN_ABIS)}")
        out[abi] = path
    return out
