"""Which benchmark_model binary a device gets, by its ABI."""
from __future__ import annotations

from pathlib import Path

import device_agents
from harness.errors import DeviceError, UserError

SHIPPED_DIR = Path(device_agents.__file__).resolve().parent / "bin"


def shipped_binary(abi: str) -> Path | None:
    path = SHIPPED_DIR / abi / "benchmark_model"
    return path if path.is_file() else None


def binary_for_abi(abi: str | None, configured: dict[str, str]) -> Path:
    """The configured binary for `abi`, else the one bench ships (x86_64 for virtual devices)."""
    if not abi:
        raise DeviceError("device did not report ro.product.cpu.abi")
    if abi in configured:
        path = Path(configured[abi]).expanduser()
        if not path.is_file():
            raise UserError(f"benchmark_model for {abi}: {path} is not a file; "
                            f"fix the path in --binary {abi}=PATH or [binaries] in bench.toml")
        return path
    shipped = shipped_binary(abi)
    if shipped is None:
        raise DeviceError(f"no benchmark_model for ABI {abi}: give one with "
                          f"--binary {abi}=PATH or [binaries] {abi} = \"PATH\" in bench.toml")
    return shipped


def parse_binary_options(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        abi, sep, path = value.partition("=")
        if not sep or not abi or not path:
            raise UserError(f"--binary {value}: expected ABI=PATH, e.g. --binary arm64-v8a=./benchmark_model")
        out[abi] = path
    return out
