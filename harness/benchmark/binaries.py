"""Which benchmark_model binary a device gets, by its ABI."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import device_agents
from harness.benchmark.flavours import Flavour
from harness.config import KNOWN_ABIS
from harness.errors import DeviceError, UserError

SHIPPED_DIR = Path(device_agents.__file__).resolve().parent / "bin"


# The file of each flavour bench ships for its virtual devices, under bin/<abi>/.
SHIPPED_NAMES = {Flavour.TFLITE: "benchmark_model", Flavour.LITERT: "benchmark_litert_model"}
# A virtual device says which flavour its lab was started with (`bench lab up --flavour`).
VIRTUAL_FLAVOUR_PROP = "bench.virtual.flavour"


def binary_version(binary: Path) -> str | None:
    """The version a binary goes by: what it was fetched as (its fetch record), bench's own for
    the ones bench ships; None for any other file (benchmark_model prints no version)."""
    from harness.benchmark.fetch import read_record

    fetched = read_record(Path(binary))
    if fetched is not None:
        return fetched.version
    if Path(binary).resolve().is_relative_to(SHIPPED_DIR):
        import harness

        return f"bench-virtual {harness.__version__}"
    return None


def remote_binary_path(remote_dir: str) -> str:
    """Where the binary goes on the device, whatever its flavour or file name here."""
    return f"{remote_dir}/benchmark_model"


def shipped_binary(abi: str, flavour: Flavour = Flavour.TFLITE) -> Path | None:
    path = SHIPPED_DIR / abi / SHIPPED_NAMES[flavour]
    return path if path.is_file() else None


def binary_for_abi(abi: str | None, configured: dict[str, str],
                   pinned_sha256: dict[str, str] | None = None, *,
                   lab_binaries: dict | None = None,
                   flavour: Flavour = Flavour.TFLITE) -> Path:
    """The configured binary for `abi`, else the one bench ships (x86_64 for virtual devices,
    of the `flavour` the device's lab runs).

    `pinned_sha256` (ABI -> sha256, from [lab.binaries]) refuses a binary whose content differs:
    a lab compares numbers across nights only if every night ran the same tool. `lab_binaries`
    ([lab.binaries] entries) say how to get a pinned binary back when its file is gone.
    """
    if not abi:
        raise DeviceError("device did not report ro.product.cpu.abi")
    if abi in configured:
        path = Path(configured[abi]).expanduser()
        if not path.is_file():
            raise UserError(missing_binary_message(abi, path, (lab_binaries or {}).get(abi)))
    else:
        path = shipped_binary(abi, flavour)
        if path is None:
            raise DeviceError(no_binary_message(abi))
    expected = (pinned_sha256 or {}).get(abi)
    if expected:
        verify_binary_sha256(abi, path, expected)
    return path


def shipped_flavour(props: dict) -> Flavour:
    """The flavour a virtual device's lab asked for (`bench lab up --flavour`); classic otherwise."""
    try:
        return Flavour(props.get(VIRTUAL_FLAVOUR_PROP, Flavour.TFLITE.value))
    except ValueError:
        return Flavour.TFLITE


def no_binary_message(abi: str) -> str:
    """What a run says for a device whose ABI has no benchmark_model: the command that gets one."""
    return (f"no benchmark_model for ABI {abi}: fetch Google's prebuilt with "
            f"`bench binaries fetch --abi {abi}` (pins it in bench.toml), or give one with "
            f"--binary {abi}=PATH")


def missing_binary_message(abi: str, path: Path, pin=None) -> str:
    from harness.benchmark.pins import pinned_binary_missing_hint

    if pin is not None and Path(pin.path).expanduser() == path:
        return (f"benchmark_model for {abi}: {path} (pinned in [lab.binaries.{abi}]) is not a "
                f"file here; {pinned_binary_missing_hint(abi, pin)}")
    return (f"benchmark_model for {abi}: {path} is not a file; "
            f"fix the path in --binary {abi}=PATH or [binaries] in bench.toml")


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
