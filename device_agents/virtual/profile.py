"""Replayed profiles of real phones: a virtual device that answers as a recorded phone does.

A profile is a folder (`bench lab up --virtual N --profile DIR`, or one of the folders under
`profiles/` by name); every file is a real phone's own output, named in the folder's SOURCES:

    getprop.txt              `adb shell getprop` ([key]: [value] lines)
    dumpsys/<service>.txt    `adb shell dumpsys <service>` (battery, thermalservice, power, ...)
    fs/<absolute path>       a file's content (fs/proc/meminfo, fs/sys/class/thermal/...)
    denied.txt               device paths that answer `Permission denied` (SELinux), one a line
    toybox.txt               `adb shell toybox` (the applets the phone's toybox has)

What the profile lacks keeps the virtual device's default, and faults still apply on top. A
profile changes what the device says about itself, never a latency: launches still run on the
device's own host cores (a mask over the profile's cores is mapped onto them, see cpus.py).
Two facts stay the virtual device's own whatever the profile says: its `ro.serialno` (each
device of a lab keeps its own identity) and the `bench.virtual.*` properties that say the
numbers are host-CPU measurements.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import device_agents

PROFILES_DIR = Path(device_agents.__file__).resolve().parent / "virtual" / "profiles"
GETPROP_FILE = "getprop.txt"
DUMPSYS_DIR = "dumpsys"
FS_DIR = "fs"
DENIED_FILE = "denied.txt"
TOYBOX_FILE = "toybox.txt"
SOURCES_FILE = "SOURCES"
# Properties a profile never overrides (see the module docstring).
OWN_PROPS = ("ro.serialno",)
OWN_PROP_PREFIX = "bench.virtual."
_PROP_LINE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
# Folders whose default content a profile replaces whole when it has any file under them: a
# phone's thermal zones or cores are its own set, not the virtual device's plus the phone's.
REPLACED_TREES = ("sys/class/thermal", "sys/devices/system/cpu")


class ProfileError(ValueError):
    """A profile folder bench cannot use (say which file and why)."""


def resolve_profile(name_or_path: str) -> Path:
    """A profile folder from a path, or the name of one bench ships (profiles/<name>)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    shipped = PROFILES_DIR / name_or_path
    if "/" not in name_or_path and shipped.is_dir():
        return shipped
    known = ", ".join(shipped_profiles()) or "none"
    raise ProfileError(f"--profile {name_or_path}: no such folder, nor a profile bench ships "
                       f"({known}); give a folder made by `bench lab record-profile`")


def shipped_profiles() -> list[str]:
    if not PROFILES_DIR.is_dir():
        return []
    return sorted(p.name for p in PROFILES_DIR.iterdir() if (p / GETPROP_FILE).is_file())


_PROP_START = re.compile(r"^\[([^\]]+)\]: \[(.*)$")


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` output -> {key: value}. getprop prints a value as it is, so one with newlines
    (persist.sys.boot.reason.history on many phones) spans lines up to the one ending in `]`."""
    props: dict[str, str] = {}
    key, parts = None, []
    for line in text.splitlines():
        line = line.rstrip("\r")
        if key is not None:
            parts.append(line)
            if line.endswith("]"):
                props[key] = "\n".join(parts)[:-1]
                key, parts = None, []
            continue
        match = _PROP_LINE.match(line)
        if match:
            props[match.group(1)] = match.group(2)
            continue
        start = _PROP_START.match(line)
        if start:
            key, parts = start.group(1), [start.group(2)]
    return props


@dataclass
class DeviceProfile:
    root: Path
    _dumpsys: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: Path | str) -> "DeviceProfile":
        root = Path(root)
        if not root.is_dir():
            raise ProfileError(f"profile {root}: not a folder")
        profile = cls(root)
        if (root / GETPROP_FILE).exists() and not profile.props:
            raise ProfileError(f"profile {root}: {GETPROP_FILE} has no `[key]: [value]` line; "
                               "save the output of `adb shell getprop` there")
        return profile

    @property
    def name(self) -> str:
        return self.root.name

    @cached_property
    def props(self) -> dict[str, str]:
        path = self.root / GETPROP_FILE
        if not path.is_file():
            return {}
        recorded = parse_getprop(path.read_text(errors="replace"))
        return {k: v for k, v in recorded.items()
                if k not in OWN_PROPS and not k.startswith(OWN_PROP_PREFIX)}

    def dumpsys(self, service: str) -> str | None:
        """The recorded `dumpsys <service>` output, None when the profile has none."""
        if service not in self._dumpsys:
            path = self.root / DUMPSYS_DIR / f"{service}.txt"
            if "/" in service or not path.is_file():
                return None
            self._dumpsys[service] = path.read_text(errors="replace")
        return self._dumpsys[service]

    @property
    def fs_root(self) -> Path:
        return self.root / FS_DIR

    def fs_files(self) -> list[tuple[str, Path]]:
        """(device path, file) of every recorded file."""
        base = self.fs_root
        if not base.is_dir():
            return []
        root = base.resolve()
        # Regular files only, inside the profile: a link in a shared profile must not bring a
        # file of this host into the device.
        return [("/" + p.relative_to(base).as_posix(), p) for p in sorted(base.rglob("*"))
                if p.is_file() and not p.is_symlink() and p.resolve().is_relative_to(root)]

    def replaces(self, tree: str) -> bool:
        """Whether the profile brings its own files under `tree` (e.g. sys/class/thermal)."""
        return (self.fs_root / tree).is_dir()

    @cached_property
    def denied(self) -> tuple[str, ...]:
        path = self.root / DENIED_FILE
        if not path.is_file():
            return ()
        out = []
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                if not line.startswith("/"):
                    raise ProfileError(f"profile {self.root}: {DENIED_FILE}: {line!r} is not an "
                                       "absolute device path")
                out.append(posixpath.normpath(line))
        return tuple(out)

    @cached_property
    def toybox_applets(self) -> frozenset[str] | None:
        """The applets the phone's toybox lists (None: the profile does not say)."""
        path = self.root / TOYBOX_FILE
        if not path.is_file():
            return None
        return frozenset(path.read_text(errors="replace").split())

    def cpu_count(self) -> int | None:
        """Cores the phone has: its cpu<N> folders under sys/devices/system/cpu."""
        base = self.fs_root / "sys/devices/system/cpu"
        if not base.is_dir():
            return None
        cores = [p for p in base.iterdir() if re.fullmatch(r"cpu\d+", p.name) and p.is_dir()]
        return max(int(p.name[3:]) for p in cores) + 1 if cores else None


def is_denied(device_path: str, denied: tuple[str, ...]) -> bool:
    """The path or a folder above it is listed as denied."""
    normal = posixpath.normpath(device_path)
    return any(normal == d or normal.startswith(d.rstrip("/") + "/") for d in denied)
