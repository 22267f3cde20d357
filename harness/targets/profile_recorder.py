"""`bench lab record-profile SERIAL DIR`: record a connected phone as a replayable profile
(the layout of device_agents.virtual.profile), so that `bench lab up --profile DIR` answers as
that phone does: its properties, its dumps, its CPU and thermal files, what it denies the shell.

Every file is the phone's own output of the command named in SOURCES; nothing is made up. The
phone's serial numbers are redacted unless asked (a profile is meant to be shared, and the
virtual device keeps its own serial anyway).
"""
from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.results.schema import utc_now
from harness.targets.base import Shell
from harness.targets.telemetry import CPU_DIR, THERMAL_DIR

DUMPSYS_SERVICES = ("battery", "thermalservice", "power")
# Small sysfs files, one value each: read in one `grep -H .` (denials come back on stderr).
SMALL_FILES = (
    f"{CPU_DIR}/possible", f"{CPU_DIR}/present", f"{CPU_DIR}/online",
    *(f"{CPU_DIR}/cpu[0-9]*/cpufreq/{name}" for name in (
        "cpuinfo_max_freq", "cpuinfo_min_freq", "scaling_cur_freq", "scaling_max_freq",
        "scaling_min_freq", "scaling_governor", "scaling_available_governors",
        "related_cpus", "affected_cpus")),
    f"{THERMAL_DIR}/thermal_zone*/type", f"{THERMAL_DIR}/thermal_zone*/temp",
)
WHOLE_FILES = ("/proc/meminfo", "/proc/cpuinfo")
# Properties that identify the phone or its owner: serial numbers, IMEI/MEID, SIM and network
# hardware addresses (ro.serialno, ril.serialnumber, persist.radio.device.imei, ro.wifimac ...).
IDENTIFYING_PROP = re.compile(r"serial|imei|meid|iccid|imsi|wifimac|btmac|macaddr|"
                              r"(?:^|[._])mac(?:$|[._])|bt\.address|wifi\.address|deviceid", re.I)
RECORDED_TREES = ("/sys/", "/proc/")
REDACTED = "REDACTED"
_DENIED = re.compile(r"^(?:grep|cat): (/\S+): Permission denied$")


@dataclass
class RecordedProfile:
    root: Path
    files: list[str] = field(default_factory=list)   # relative paths written
    denied: list[str] = field(default_factory=list)  # device paths the shell may not read
    model: str | None = None


def record_profile(shell: Shell, out_dir: Path, *, keep_serial: bool = False,
                   serial_label: str | None = None) -> RecordedProfile:
    """Record the phone behind `shell` into `out_dir` (which must not hold a profile yet)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: not empty; give a new folder for the profile")
    recorded = RecordedProfile(out_dir)
    sources: list[str] = []

    def write(relative: str, text: str, command: str) -> None:
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        recorded.files.append(relative)
        sources.append(f"{relative}: `{command}`")

    getprop = shell.shell("getprop").stdout
    if not keep_serial:
        getprop = re.sub(r"(?m)^\[([^\]]+)\]: \[[^\]]*\]$",
                         lambda m: (f"[{m.group(1)}]: [{REDACTED}]"
                                    if IDENTIFYING_PROP.search(m.group(1)) else m.group(0)),
                         getprop)
    write("getprop.txt", getprop, "adb shell getprop" + ("" if keep_serial else
                                                        " (serial numbers redacted)"))
    found = re.search(r"(?m)^\[ro\.product\.model\]: \[(.*)\]$", getprop)
    recorded.model = found.group(1) if found else None

    for service in DUMPSYS_SERVICES:
        result = shell.shell(f"dumpsys {service}")
        if result.status == 0 and result.stdout.strip() and "Can't find service" not in result.output:
            write(f"dumpsys/{service}.txt", result.stdout, f"adb shell dumpsys {service}")

    toybox = shell.shell("toybox")
    if toybox.status == 0 and toybox.stdout.split():
        write("toybox.txt", toybox.stdout, "adb shell toybox")

    grep = shell.shell("grep -H . " + " ".join(SMALL_FILES))
    contents: dict[str, list[str]] = {}
    for line in grep.stdout.splitlines():
        path, sep, value = line.partition(":")
        if sep and path.startswith("/"):
            contents.setdefault(path, []).append(value)
    for path, lines in sorted(contents.items()):
        # The phone names the files: only plain paths under the trees asked for become files
        # here (no `..`, nothing outside out_dir).
        if posixpath.normpath(path) != path or not path.startswith(RECORDED_TREES):
            continue
        write(f"fs{path}", "\n".join(lines) + "\n", f"adb shell grep -H . {path}")
    for path in WHOLE_FILES:
        result = shell.shell(f"cat {shlex.quote(path)}")
        if result.status == 0:
            write(f"fs{path}", result.stdout, f"adb shell cat {path}")
        else:
            _note_denied(result.stderr, recorded)
    _note_denied(grep.stderr, recorded)
    if recorded.denied:
        (out_dir / "denied.txt").write_text("".join(f"{p}\n" for p in sorted(recorded.denied)))
        recorded.files.append("denied.txt")
        sources.append("denied.txt: the paths above that answered `Permission denied`")

    import harness

    who = serial_label if keep_serial and serial_label else "serial redacted"
    header = [f"Recorded by `bench lab record-profile` (bench {harness.__version__}) from "
              f"{recorded.model or 'an unnamed model'} ({who}) at {utc_now()}.",
              "Each file is that phone's own output of the command named beside it.", ""]
    (out_dir / "SOURCES").write_text("\n".join(header + sources) + "\n")
    return recorded


def _note_denied(stderr: str, recorded: RecordedProfile) -> None:
    for line in stderr.splitlines():
        match = _DENIED.match(line.strip())
        if match and match.group(1) not in recorded.denied:
            recorded.denied.append(match.group(1))
