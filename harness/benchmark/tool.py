"""Which benchmark_model a binary is, learnt by asking it, and what it can do.

Two tools go by the name benchmark_model (../shared/reference/benchmark_model.md; LiteRT's
`tflite/tools/command_line_flags.cc`, `benchmark_model.cc`, `litert/tools/benchmark_litert_model.h`):
- the classic TFLite tool (BenchmarkTfLiteModel): delegates through the delegate providers
  (`--use_xnnpack`, `--use_gpu`, `--use_nnapi`), `--enable_op_profiling`, `--help`;
- LiteRT's CompiledModel tool (BenchmarkLiteRtModel, what Google now publishes and LiteRT CLI
  downloads): accelerators `--use_cpu` `--use_gpu` `--use_npu`, `--use_profiler`, no delegate
  provider flags at all.
Both inherit BenchmarkModel's core flags (`--num_runs`, `--min_secs`, `--num_threads`,
`--report_peak_memory_footprint`, ...), both print their flags with `tflite::Flags::Usage` when
`--help` is the first argument (`usage: PROG <flags>` / `Flags:` / one
`\t--name=default\ttype\toptional\thelp` row per flag), and both warn about a flag they do not
know and run on: so a flag the binary lacks must never be passed, or the launch silently
measures something else. Neither prints a version; a binary bench fetched has the one its
download was published under.

The probe runs once per (device, binary sha256) and is cached in the state dir.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.benchmark.flavours import Flavour
from harness.paths import state_dir
from harness.results.schema import utc_now

PROBE_DIR = "tool-probes"
PROBE_TIMEOUT_S = 20.0  # `--help` loads no model: seconds, even on a slow phone
_USAGE_ROW = re.compile(r"^\s*--([A-Za-z0-9_][A-Za-z0-9_-]*)=(.*?)\s*\t(int32|int64|float|bool|"
                        r"string)\t(optional|required)\b")
# Rows only one flavour's usage has (the LiteRT tool registers no delegate provider).
LITERT_MARKS = ("use_npu", "use_cpu", "dispatch_library_path", "use_profiler")
TFLITE_MARKS = ("use_xnnpack", "enable_op_profiling", "use_nnapi", "help")


@dataclass
class ToolInfo:
    """What a benchmark_model binary is, as it said itself."""

    flavour: str | None           # a Flavour value; None: the probe learnt nothing
    flags: list[str] = field(default_factory=list)  # every flag its usage lists
    sha256: str = ""
    version: str | None = None    # the published version it was fetched as (it prints none)
    probed_at: str = ""
    note: str = ""                # how it was learnt, or why not

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def known(self) -> bool:
        return self.flavour is not None and bool(self.flags)

    def label(self) -> str:
        if self.flavour is None:
            return "unknown"
        return f"{self.flavour} {self.version}" if self.version else str(self.flavour)


def parse_usage(output: str) -> tuple[Flavour | None, list[str]]:
    """The flavour and flags from what `benchmark_model --help` printed (either stream)."""
    flags = []
    for line in output.splitlines():
        text = line[len("ERROR: "):] if line.startswith("ERROR: ") else line
        match = _USAGE_ROW.match(text)
        if match and match.group(1) not in flags:
            flags.append(match.group(1))
    if not flags:
        return None, []
    names = set(flags)
    if any(mark in names for mark in LITERT_MARKS):
        return Flavour.LITERT, flags
    if any(mark in names for mark in TFLITE_MARKS) or "graph" in names:
        return Flavour.TFLITE, flags
    return None, flags


def probe_tool(target, remote_binary: str, sha256: str, device_id: str,
               version: str | None = None, cache_root: Path | None = None) -> ToolInfo:
    """Ask the binary on the device what it is (cached per device and binary hash)."""
    cache = _cache_path(cache_root, sha256, device_id)
    try:
        cached = ToolInfo(**json.loads(cache.read_text()))
        if cached.known:
            if version and not cached.version:
                cached.version = version
            return cached
    except (OSError, ValueError, TypeError):
        pass
    # A failing link raises DeviceError here: the caller's retries handle it as any other.
    result = target.shell(f"{shlex.quote(remote_binary)} --help", timeout_s=PROBE_TIMEOUT_S)
    flavour, flags = parse_usage(result.stdout + "\n" + result.stderr)
    if flavour is None:
        tail = [line for line in result.output.strip().splitlines() if line.strip()]
        said = (f"listed {len(flags)} flags of neither flavour" if flags else "listed no flags")
        note = (f"`benchmark_model --help` {said} (exit {result.status}): "
                f"{tail[-1].strip()[:160] if tail else 'no output'}")
    else:
        note = f"`--help` lists {len(flags)} flags"
    info = ToolInfo(flavour.value if flavour else None, flags, sha256, version, utc_now(), note)
    if info.known:
        _save(cache, info)
    return info


def _cache_path(root: Path | None, sha256: str, device_id: str) -> Path:
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", device_id)[:120] or "device"
    return (root or state_dir() / PROBE_DIR) / sha256 / f"{safe_id}.json"


def _save(path: Path, info: ToolInfo) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        staged.write_text(json.dumps(asdict(info), indent=1))
        os.replace(staged, path)
    except OSError:
        pass  # only a cache: the next run asks the binary again
