"""Which `adb` program bench runs, in one place.

bench starts adb servers of its own (the virtual lab's, a restarted local one) and its tests drive
them with the adb command line. It runs the adb that ships in the adbutils wheel it depends on:
one known version (36, server protocol 41), whatever else the machine has. Mobile engineers
usually have platform-tools' adb on PATH, and Debian's `adb` package is 29.0.6: adbutils' own
`adb_path()` would prefer those, and their messages and behaviour differ. `BENCH_ADB=/path/to/adb`
makes bench use another one on purpose. Servers bench does not start (a lab host's, the user's
own on 5037) are only spoken to over the protocol, whatever adb started them.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

from harness.errors import UserError

ADB_ENV = "BENCH_ADB"


def adb_path() -> str:
    """The adb bench runs: $BENCH_ADB, else the adbutils wheel's, else the one on PATH."""
    chosen = os.environ.get(ADB_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{ADB_ENV}={chosen}: not an executable file; point it at an adb "
                            f"program or unset it to use the adb bench ships")
        return str(path)
    import adbutils

    bundled = Path(adbutils.__file__).resolve().parent / "binaries" / "adb"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return adbutils.adb_path()  # no wheel binary on this platform: whatever adb is found


@functools.lru_cache(maxsize=8)
def adb_version(path: str) -> str:
    """`adb version` in short, e.g. "1.0.41 (36.0.0-13206524)"; "unknown" if it cannot say."""
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    protocol = re.search(r"Android Debug Bridge version (\S+)", out)
    build = re.search(r"^Version (\S+)", out, re.M)
    if not protocol:
        return "unknown"
    return protocol.group(1) + (f" ({build.group(1)})" if build else "")


def adb_provenance(servers) -> dict:
    """What a run records of adb: the program bench runs and each server's protocol version
    (`host:version`; servers bench did not start may come from any adb)."""
    path = adb_path()
    versions = {}
    for server in servers:
        try:
            versions[f"{server.name} {server.address}"] = server.client(5).server_version()
        except Exception:  # adbutils raises several kinds; an unreachable server has no version
            versions[f"{server.name} {server.address}"] = None
    return {"program": path, "version": adb_version(path), "server_versions": versions}


def describe_adb(provenance: dict | None) -> str:
    """One line for reports, e.g. `1.0.41 (36.0.0-13206524); servers: virtual-lab ... v41`."""
    if not provenance:
        return "not recorded"
    servers = ", ".join(f"{name} v{version if version is not None else '?'}"
                        for name, version in (provenance.get("server_versions") or {}).items())
    return f"{provenance.get('version')} ({provenance.get('program')})" + (
        f"; servers: {servers}" if servers else "")
