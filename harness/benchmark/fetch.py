"""`bench binaries fetch`: an official prebuilt benchmark_model, streamed into bench's binary
cache, checked, and pinned in bench.toml as `[lab.binaries.<abi>]`.

Where the prebuilts are (../shared/reference/benchmark_model.md §7):
- the classic TFLite tool: TensorFlow's nightly release storage,
  `<base>/<version>/android_aarch64_benchmark_model` (and `_plus_flex`), base
  `https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly`,
  version `latest` (dated builds live in numbered folders beside it);
- LiteRT's CompiledModel tool: `<base>/<version>/android_arm64/benchmark_model`, base
  `https://storage.googleapis.com/litert/binaries` (the pattern of LiteRT CLI's
  `core/constants.py` and of litert-samples' benchmark driver).

A download is streamed to a hidden file beside the cache, hashed as it comes, and only moved into
place once it is whole (the server's Content-Length) and is an ELF for the ABI asked for: a cut or
corrupt download (an HTML error page, a truncated file) is deleted, never used. A pin that the
upstream file no longer matches ("latest" moved on) is refused with both hashes and the command
that re-pins; nightly numbers only compare while every night runs the same tool.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from harness.benchmark.flavours import Flavour
from harness.errors import BenchError, UserError
from harness.paths import binaries_dir
from harness.results.schema import utc_now

TFLITE_NIGHTLY_BASE_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/"
                           "tensorflow/release/lite/tools/nightly")
LITERT_BASE_URL = "https://storage.googleapis.com/litert/binaries"
DEFAULT_BASE_URLS = {Flavour.TFLITE: TFLITE_NIGHTLY_BASE_URL, Flavour.LITERT: LITERT_BASE_URL}
DEFAULT_VERSION = "latest"
# The platform names in each storage's file names, per Android ABI.
TFLITE_PLATFORMS = {"arm64-v8a": "android_aarch64", "armeabi-v7a": "android_arm"}
LITERT_PLATFORMS = {"arm64-v8a": "android_arm64"}
BINARY_NAME = "benchmark_model"
RECORD_NAME = "fetch.json"
CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_S = 60.0
# ELF e_machine per ABI (elf.h: EM_AARCH64, EM_ARM, EM_X86_64, EM_386) and its class (2: 64-bit).
ELF_MACHINES = {"arm64-v8a": (183, 2), "armeabi-v7a": (40, 1), "x86_64": (62, 2), "x86": (3, 1)}
ELF_MAGIC = b"\x7fELF"


class FetchError(BenchError):
    """The download failed or was refused (network, HTTP error, cut short, not a binary for
    the ABI, a pin that upstream no longer matches): nothing was kept or pinned."""


@dataclass
class FetchedBinary:
    """A benchmark_model in bench's binary cache, and where it came from (its `fetch.json`)."""

    abi: str
    flavour: str        # a Flavour value
    version: str        # as asked for: "latest", "2.2.0", a nightly folder
    url: str
    sha256: str
    size_bytes: int
    fetched_at: str
    path: str
    flex: bool = False
    etag: str | None = None
    last_modified: str | None = None

    def pin_fields(self) -> dict:
        """What `[lab.binaries.<abi>]` keeps of it."""
        return {"path": self.path, "sha256": self.sha256, "flavour": self.flavour,
                "version": self.version, "url": self.url, "size_bytes": self.size_bytes,
                "fetched_at": self.fetched_at}


def binary_url(abi: str, flavour: Flavour, version: str = DEFAULT_VERSION,
               base_url: str | None = None, flex: bool = False) -> str:
    """The download URL of the prebuilt for `abi`; UserError for what no storage publishes."""
    base = (base_url or DEFAULT_BASE_URLS[flavour]).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise UserError(f"--base-url {base_url}: give an http(s) URL of a mirror with the same "
                        "layout; a file of your own goes in with --binary ABI=PATH")
    version = (version or "").strip("/")
    if not version or any(part in ("", ".", "..") for part in version.split("/")) or (
            flavour is Flavour.LITERT and "/" in version):
        example = "2.2.0" if flavour is Flavour.LITERT else "41/20200921-215507"
        raise UserError(f"--version {version!r}: give latest or a published version, "
                        f"e.g. {example}")
    if flavour is Flavour.TFLITE:
        platform = TFLITE_PLATFORMS.get(abi)
        if platform is None:
            raise UserError(f"--abi {abi}: TensorFlow publishes the classic benchmark_model for "
                            f"{', '.join(TFLITE_PLATFORMS)} only; give --binary {abi}=PATH")
        return f"{base}/{version}/{platform}_benchmark_model" + ("_plus_flex" if flex else "")
    if flex:
        raise UserError("--flex: only the classic TFLite tool has a Flex build "
                        "(benchmark_model_plus_flex); drop --flex or use --flavour tflite")
    platform = LITERT_PLATFORMS.get(abi)
    if platform is None:
        raise UserError(f"--abi {abi}: LiteRT publishes benchmark_model for "
                        f"{', '.join(LITERT_PLATFORMS)} only; give --binary {abi}=PATH")
    return f"{base}/{version}/{platform}/{BINARY_NAME}"


def elf_problem(head: bytes, abi: str) -> str | None:
    """Why `head` (a file's first bytes) is not an executable for `abi`; None when it is."""
    if not head.startswith(ELF_MAGIC) or len(head) < 20:
        shown = head[:16].decode("latin-1").encode("unicode_escape").decode()
        return f"not an ELF file (it starts with {shown!r})"
    machine, elf_class = ELF_MACHINES[abi]
    found_machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    if head[4] != elf_class or found_machine != machine:
        names = {m: a for a, (m, _c) in ELF_MACHINES.items()}
        return (f"an ELF for {names.get(found_machine, f'machine {found_machine}')}, "
                f"not {abi}")
    return None


def download(url: str, dest_dir: Path, abi: str,
             progress: Callable[[int, int | None], None] | None = None,
             timeout_s: float = HTTP_TIMEOUT_S) -> tuple[Path, str, int, dict]:
    """Stream `url` to a hidden file in `dest_dir`; (path, sha256, size, headers) once whole.

    Nothing is left behind when it fails: a cut-off stream, a Content-Length not met, or a file
    that is no ELF for `abi` (a proxy's error page) is deleted and raised as FetchError.
    """
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".partial-", dir=dest_dir)
    except OSError as exc:
        raise UserError(f"binary cache {dest_dir}: cannot write there ({exc.strerror or exc}); "
                        "set BENCH_BINARIES_DIR to a writable folder") from None
    temp = Path(temp_name)
    try:
        response = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 (http(s), binary_url)
    except (urllib.error.URLError, OSError) as exc:
        os.close(fd)
        temp.unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check --version and "
                             "--base-url") from None
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{url}: cannot download ({reason}); check the network or give a "
                         "mirror with --base-url, or a local file with --binary ABI=PATH") from None
    digest = hashlib.sha256()
    received = 0
    head = b""
    try:
        with response, os.fdopen(fd, "wb") as out:
            length_text = response.headers.get("Content-Length")
            expected = int(length_text) if length_text and length_text.isdigit() else None
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    raise FetchError(f"{url}: download cut off after {received} bytes ({exc}); "
                                     "nothing kept, run the fetch again") from None
                if not chunk:
                    break
                if len(head) < 64:
                    head += chunk[:64 - len(head)]
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, expected)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and received != expected:
            raise FetchError(f"{url}: download cut off: {received} of {expected} bytes; "
                             "nothing kept, run the fetch again")
        problem = elf_problem(head, abi)
        if problem:
            raise FetchError(f"{url}: {problem}, so not benchmark_model for {abi}; nothing "
                             "kept (a proxy's error page or a wrong --base-url?)")
        headers = {"etag": response.headers.get("ETag"),
                   "last_modified": response.headers.get("Last-Modified")}
        return temp, digest.hexdigest(), received, headers
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, FetchError) or not isinstance(exc, Exception):
            raise
        raise FetchError(f"{url}: download failed after {received} bytes "
                         f"({type(exc).__name__}: {exc}); nothing kept, run the fetch again"
                         ) from None


def cached_binary_path(sha256: str, root: Path | None = None) -> Path:
    return (root or binaries_dir()) / sha256 / BINARY_NAME


def store_in_cache(temp: Path, record: FetchedBinary, root: Path | None = None) -> FetchedBinary:
    """Move a whole, checked download to `<cache>/<sha256>/benchmark_model` (executable) with
    its `fetch.json`; content-addressed, so a second fetch of the same bytes changes nothing."""
    final = cached_binary_path(record.sha256, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(temp, 0o755)
    os.replace(temp, final)
    record.path = str(final)
    record_path = final.parent / RECORD_NAME
    staged = record_path.with_suffix(".tmp")
    staged.write_text(json.dumps(asdict(record), indent=1))
    os.replace(staged, record_path)
    return record


def read_record(path: Path) -> FetchedBinary | None:
    """The fetch record beside a cached binary (None for a binary bench did not fetch)."""
    try:
        data = json.loads((Path(path).parent / RECORD_NAME).read_text())
        return FetchedBinary(**data)
    except (OSError, ValueError, TypeError):
        return None


def cached_binaries(root: Path | None = None) -> list[FetchedBinary]:
    out = []
    for record_path in sorted((root or binaries_dir()).glob(f"*/{RECORD_NAME}")):
        record = read_record(record_path.parent / BINARY_NAME)
        if record is not None:
            out.append(record)
    return out
