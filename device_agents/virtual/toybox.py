"""Toybox tools of the virtual device (cat, ls, df, sha256sum, taskset, ...).

Every path is a device path resolved through the sandbox (so nothing outside it is read or
written); errors read like toybox's (``cat: /x: No such file or directory``, exit 1).
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import os
import posixpath
import re
import shutil
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from device_agents.virtual.cpus import CpuSlice
from device_agents.virtual.sandbox import HOST_MODE_BITS
from device_agents.virtual.shell_io import Streams

if TYPE_CHECKING:  # pragma: no cover
    from device_agents.virtual.shell import Interpreter

SHELL_UID = 2000


def split_flags(args: list[str], known: str) -> tuple[set[str], list[str]]:
    """Splits leading ``-abc`` flags (letters in ``known``) from operands; ``--`` ends flags."""
    flags: set[str] = set()
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        arg = rest.pop(0)
        if arg == "--":
            break
        if not set(arg[1:]) <= set(known):
            rest.insert(0, arg)
            break
        flags.update(arg[1:])
    return flags, rest


def error_text(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "Permission denied"
    return e.strerror or str(e)


async def fail(io: Streams, tool: str, path: str, e: OSError | str) -> int:
    reason = e if isinstance(e, str) else error_text(e)
    await io.complain(f"{tool}: {path}: {reason}")
    return 1


def quota_bytes(sh: "Interpreter") -> int | None:
    return sh.ctx.faults.current().storage_quota_bytes


# -- reading --------------------------------------------------------------------------------------
async def cat(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    _flags, paths = split_flags(argv[1:], "uv")
    status = 0
    for path in paths or ["-"]:
        if path == "-":
            await io.out(io.stdin)
            continue
        if path == "/dev/null":
            continue
        try:
            await io.out(sh.host_path(path).read_bytes())
        except OSError as e:
            status = await fail(io, "cat", path, e)
    return status


async def _read_input(sh: "Interpreter", io: Streams, tool: str, path: str) -> bytes | None:
    if path == "-":
        return io.stdin
    try:
        return sh.host_path(path).read_bytes()
    except OSError as e:
        await fail(io, tool, path, e)
        return None


def _line_count_arg(args: list[str], default: int = 10) -> tuple[int, list[str]]:
    count, rest = default, []
    i = 0
    while i < len(args):
        if args[i] == "-n" and i + 1 < len(args):
            count, i = int(args[i + 1]), i + 2
            continue
        if re.fullmatch(r"-n?\d+", args[i]):
            count = int(args[i].lstrip("-n"))
        else:
            rest.append(args[i])
        i += 1
    return count, rest


async def head(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    count, paths = _line_count_arg(argv[1:])
    status = 0
    for path in paths or ["-"]:
        data = await _read_input(sh, io, "head", path)
        if data is None:
            status = 1
            continue
        await io.out(b"".join(data.splitlines(keepends=True)[:count]))
    return status


async def tail(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    count, paths = _line_count_arg(argv[1:])
    status = 0
    for path in paths or ["-"]:
        data = await _read_input(sh, io, "tail", path)
        if data is None:
            status = 1
            continue
        lines = data.splitlines(keepends=True)
        await io.out(b"".join(lines[-count:] if count else []))
    return status


async def grep(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, rest = split_flags(argv[1:], "ivcqEFhHn")
    if not rest:
        await io.complain("grep: Need PATTERN")
        return 2
    pattern_text, paths = rest[0], rest[1:]
    if "F" in flags:
        pattern_text = re.escape(pattern_text)
    elif "E" not in flags:
        # Basic regex: \| \( \) are the operators, bare | ( ) are literal.
        pattern_text = re.sub(r"\\([|()])|([|()+?{}])",
                              lambda m: m.group(1) or "\\" + m.group(2), pattern_text)
    pattern = re.compile(pattern_text, re.IGNORECASE if "i" in flags else 0)
    matched, status = 0, 0
    for path in paths or ["-"]:
        data = await _read_input(sh, io, "grep", path)
        if data is None:
            status = 2
            continue
        # -H always names the file (what scripts use to read many small files in one go).
        prefix = f"{path}:" if ("H" in flags or len(paths) > 1) and "h" not in flags else ""
        count = 0
        for number, line in enumerate(data.decode(errors="replace").splitlines(), start=1):
            if bool(pattern.search(line)) != ("v" in flags):
                count += 1
                if not ({"c", "q"} & flags):
                    shown = f"{number}:{line}" if "n" in flags else line
                    await io.say(f"{prefix}{shown}\n")
        if "c" in flags:
            await io.say(f"{prefix}{count}\n")
        matched += count
    if status:
        return status
    return 0 if matched else 1


async def wc(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, paths = split_flags(argv[1:], "clwm")
    flags = flags or {"l", "w", "c"}
    status = 0
    for path in paths or ["-"]:
        data = await _read_input(sh, io, "wc", path)
        if data is None:
            status = 1
            continue
        counts = []
        if "l" in flags:
            counts.append(data.count(b"\n"))
        if "w" in flags:
            counts.append(len(data.split()))
        if "c" in flags or "m" in flags:
            counts.append(len(data))
        name = "" if path == "-" else f" {path}"
        await io.say(" ".join(str(c) for c in counts) + name + "\n")
    return status


async def sha256sum(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    _flags, paths = split_flags(argv[1:], "b")
    status = 0
    for path in paths or ["-"]:
        digest = hashlib.sha256()
        if path == "-":
            digest.update(io.stdin)
        else:
            try:
                with open(sh.host_path(path), "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
            except OSError as e:
                status = await fail(io, "sha256sum", path, e)
                continue
        await io.say(f"{digest.hexdigest()}  {path}\n")
    return status


# -- listing and stat --------------------------------------------------------------------------------
def mode_string(mode: int) -> str:
    kind = "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "-"
    bits = "".join(ch if mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx"))
    return kind + bits


def long_line(st: os.stat_result, name: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    return f"{mode_string(st.st_mode)} {st.st_nlink:>2} shell shell {st.st_size:>8} {when} {name}"


async def ls(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, paths = split_flags(argv[1:], "laAhd1RFtsS")
    status = 0
    targets = paths or ["."]
    for index, path in enumerate(targets):
        try:
            host = sh.host_path(path)
            st = host.stat()
        except OSError as e:
            status = await fail(io, "ls", path, e)
            continue
        if not stat.S_ISDIR(st.st_mode) or "d" in flags:
            await io.say((long_line(st, path) if "l" in flags else path) + "\n")
            continue
        names = sorted(os.listdir(host))
        if "a" not in flags and "A" not in flags:
            names = [n for n in names if not n.startswith(".")]
        if "a" in flags:
            names = [".", ".."] + names
        if len(targets) > 1:
            await io.say(("\n" if index else "") + f"{path}:\n")
        if "l" in flags:
            stats = [(n, os.lstat(host / n) if n not in (".", "..") else os.stat(host / n)) for n in names]
            total_kb = sum(math.ceil(s.st_size / 1024) for _, s in stats)
            lines = [f"total {total_kb}"] + [long_line(s, n) for n, s in stats]
        else:
            lines = names
        await io.say("".join(line + "\n" for line in lines))
    return status


STAT_FIELDS = {
    "s": lambda st, p: str(st.st_size),
    "n": lambda st, p: p,
    "a": lambda st, p: f"{stat.S_IMODE(st.st_mode):o}",
    "A": lambda st, p: mode_string(st.st_mode),
    "F": lambda st, p: "directory" if stat.S_ISDIR(st.st_mode) else "regular file",
    "Y": lambda st, p: str(int(st.st_mtime)),
    "X": lambda st, p: str(int(st.st_atime)),
    "Z": lambda st, p: str(int(st.st_ctime)),
    "u": lambda st, p: str(SHELL_UID),
    "g": lambda st, p: str(SHELL_UID),
    "U": lambda st, p: "shell",
    "G": lambda st, p: "shell",
    "h": lambda st, p: str(st.st_nlink),
    "b": lambda st, p: str(math.ceil(st.st_size / 512)),
    "B": lambda st, p: "512",
    "%": lambda st, p: "%",
}


def format_stat(fmt: str, st: os.stat_result, path: str) -> str:
    return re.sub(r"%(.)", lambda m: STAT_FIELDS.get(m.group(1), lambda *_: m.group(0))(st, path), fmt)


async def stat_(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    fmt = None
    if len(args) >= 2 and args[0] == "-c":
        fmt, args = args[1], args[2:]
    elif args and args[0].startswith("--format="):
        fmt, args = args[0].split("=", 1)[1], args[1:]
    if not args:
        await io.complain("stat: Needs 1 argument")
        return 1
    status = 0
    for path in args:
        try:
            st = sh.host_path(path).stat()
        except OSError as e:
            status = await fail(io, "stat", path, e)
            continue
        if fmt is None:
            text = format_stat("  File: %n\n  Size: %s\t Blocks: %b\t IO Blocks: 4096\t%F\n"
                               "Access: (0%a/%A)\tUid: (%u/%U)\tGid: (%g/%G)\n", st, path)
        else:
            text = format_stat(fmt, st, path) + "\n"
        await io.say(text)
    return status


# -- changing files --------------------------------------------------------------------------------
SYMBOLIC_MODE_RE = re.compile(r"([ugoa]*)([-+=])([rwxX]*)")


def apply_mode(spec: str, current: int, is_dir: bool) -> int:
    """New permission bits for an octal (755) or symbolic (+x, u+rw,go-w) chmod ``spec``."""
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return int(spec, 8)
    mode = stat.S_IMODE(current)
    for clause in spec.split(","):
        match = SYMBOLIC_MODE_RE.fullmatch(clause)
        if not match:
            raise ValueError(spec)
        who, op, perms = match.groups()
        who = who or "a"
        shifts = {"u": [6], "g": [3], "o": [0], "a": [6, 3, 0]}
        bits = 0
        for w in who:
            for shift in shifts[w]:
                for p in perms:
                    if p == "r":
                        bits |= 4 << shift
                    elif p == "w":
                        bits |= 2 << shift
                    elif p == "x" or (p == "X" and (is_dir or mode & 0o111)):
                        bits |= 1 << shift
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            mask = sum(7 << s for w in who for s in shifts[w])
            mode = (mode & ~mask) | bits
    return mode


async def chmod(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, rest = split_flags(argv[1:], "Rfv")
    if len(rest) < 2:
        await io.complain("chmod: Need 2 arguments")
        return 1
    spec, paths = rest[0], rest[1:]
    status = 0
    for path in paths:
        try:
            host = sh.writable_path(path)
            targets = [host]
            if "R" in flags and host.is_dir():
                targets += sorted(host.rglob("*"))
            for target in targets:
                st = target.stat()
                # Only permission bits reach the host file: a setuid/setgid bit on a file
                # owned by the lab's user would let another local user run code as it.
                target.chmod(apply_mode(spec, st.st_mode, stat.S_ISDIR(st.st_mode)) & HOST_MODE_BITS)
        except ValueError:
            await io.complain(f"chmod: bad mode '{spec}'")
            return 1
        except OSError as e:
            status = await fail(io, "chmod", path, e)
    return status


async def mkdir(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    parents, mode = False, None
    paths = []
    i = 0
    while i < len(args):
        if args[i] == "-p":
            parents = True
        elif args[i] == "-m" and i + 1 < len(args):
            mode, i = int(args[i + 1], 8), i + 1
        else:
            paths.append(args[i])
        i += 1
    status = 0
    for path in paths:
        try:
            host = sh.writable_path(path)
            if parents and host.is_dir():
                continue
            host.mkdir(parents=parents)
            if mode is not None:
                host.chmod(mode & HOST_MODE_BITS)
        except OSError as e:
            status = await fail(io, "mkdir", f"'{path}'", e)
    return status


async def rm(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, paths = split_flags(argv[1:], "rfRiv")
    recursive, force = bool({"r", "R"} & flags), "f" in flags
    status = 0
    for path in paths:
        try:
            host = sh.writable_path(path)
            if host == sh.ctx.sandbox.root:
                raise PermissionError(path)
            if host.is_dir() and not host.is_symlink():
                if not recursive:
                    status = await fail(io, "rm", path, "Is a directory")
                    continue
                shutil.rmtree(host)
            else:
                host.unlink()
        except FileNotFoundError as e:
            if not force:
                status = await fail(io, "rm", path, e)
        except OSError as e:
            status = await fail(io, "rm", path, e)
    return status


async def rmdir(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    status = 0
    for path in argv[1:]:
        try:
            sh.writable_path(path).rmdir()
        except OSError as e:
            status = await fail(io, "rmdir", path, e)
    return status


async def touch(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    _flags, paths = split_flags(argv[1:], "acm")
    status = 0
    for path in paths:
        try:
            sh.writable_path(path).touch()
        except OSError as e:
            status = await fail(io, "touch", path, e)
    return status


def _destination(sh: "Interpreter", source: str, dest: str) -> Path:
    host = sh.writable_path(dest)
    return host / posixpath.basename(source.rstrip("/")) if host.is_dir() else host


async def cp(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, rest = split_flags(argv[1:], "rRfpaPLHdnv")
    if len(rest) < 2:
        await io.complain("cp: Needs 2 arguments")
        return 1
    *sources, dest = rest
    status = 0
    for source in sources:
        try:
            src = sh.host_path(source)
            target = _destination(sh, source, dest)
            if src.is_dir():
                if not {"r", "R", "a"} & flags:
                    status = await fail(io, "cp", source, "Is a directory")
                    continue
                shutil.copytree(src, target, dirs_exist_ok=True)
                continue
            quota = quota_bytes(sh)
            if quota is not None and src.stat().st_size > sh.ctx.sandbox.free_bytes(quota):
                status = await fail(io, "cp", dest, "No space left on device")
                continue
            shutil.copyfile(src, target)
            shutil.copymode(src, target)
        except OSError as e:
            status = await fail(io, "cp", source, e)
    return status


async def mv(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    _flags, rest = split_flags(argv[1:], "fnvi")
    if len(rest) < 2:
        await io.complain("mv: Needs 2 arguments")
        return 1
    *sources, dest = rest
    status = 0
    for source in sources:
        try:
            src = sh.writable_path(source)
            if not src.exists():
                raise FileNotFoundError(2, "No such file or directory")
            shutil.move(src, _destination(sh, source, dest))
        except OSError as e:
            status = await fail(io, "mv", source, e)
    return status


# -- storage -------------------------------------------------------------------------------------------
# (filesystem, mount point); /sdcard lives on /data on a phone, so both rows show one quota.
MOUNTS = (("/dev/block/dm-5", "/data"), ("/dev/fuse", "/sdcard"))


def human_size(n_bytes: int) -> str:
    """toybox's human_readable(): 1024-based, one decimal below 10 (``1.5G``, ``15G``)."""
    value, units = float(n_bytes), ["", "K", "M", "G", "T", "P"]
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return str(int(value))
    return f"{value:.1f}{units[unit]}" if value < 10 else f"{int(round(value))}{units[unit]}"


def mount_of(device_path: str) -> tuple[str, str]:
    normal = posixpath.normpath(device_path)
    for fs, mount in MOUNTS:
        if normal == mount or normal.startswith(mount + "/"):
            return fs, mount
    if normal.startswith("/storage"):
        return MOUNTS[1]
    return "/dev/root", "/"


async def df(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, paths = split_flags(argv[1:], "khaPt")
    quota = quota_bytes(sh)
    sandbox = sh.ctx.sandbox
    rows: list[tuple[str, str]] = []
    status = 0
    for path in paths:
        try:
            if not sh.host_path(path).exists():
                raise FileNotFoundError(2, "No such file or directory")
        except OSError as e:
            status = await fail(io, "df", path, e)
            continue
        rows.append(mount_of(posixpath.join(sh.cwd, path)))
    if not paths:
        rows = list(MOUNTS)
    header = ("Filesystem", "Size", "Used", "Avail") if "h" in flags else \
             ("Filesystem", "1K-blocks", "Used", "Available")
    lines = [f"{header[0]:<16} {header[1]:>10} {header[2]:>10} {header[3]:>10} Use% Mounted on"]
    for fs, mount in rows:
        if mount == "/":
            usage = shutil.disk_usage(sandbox.root)
            size, free = usage.total, usage.free
            used = usage.used
        else:
            size, free = sandbox.size_bytes(quota), sandbox.free_bytes(quota)
            used = max(0, size - free) if quota is not None else shutil.disk_usage(sandbox.root).used
        percent = math.ceil(used * 100 / (used + free)) if used + free else 0
        if "h" in flags:
            numbers = (human_size(size), human_size(used), human_size(free))
        else:
            numbers = tuple(str(n // 1024) for n in (size, used, free))
        lines.append(f"{fs:<16} {numbers[0]:>10} {numbers[1]:>10} {numbers[2]:>10} {percent:>3}% {mount}")
    await io.say("".join(line + "\n" for line in lines))
    return status


# -- processes and the system ------------------------------------------------------------------------
def device_cpus(sh: "Interpreter") -> CpuSlice:
    return sh.ctx.config.cpu_slice()


def parse_mask(text: str) -> int:
    return int(text[2:] if text.lower().startswith("0x") else text, 16)


# sh.affinity and the kernel speak host cores; masks the shell prints or reads are the device's.
async def taskset(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, rest = split_flags(argv[1:], "pa")
    if not rest:
        await io.complain("taskset: Need 1 argument")
        return 1
    cpus_of_device = device_cpus(sh)
    if "p" in flags and len(rest) == 1:
        return await _show_affinity(rest[0], cpus_of_device, io)
    try:
        mask = parse_mask(rest[0])
    except ValueError:
        await io.complain(f"taskset: bad mask '{rest[0]}'")
        return 1
    allowed = os.sched_getaffinity(0)
    cpus = cpus_of_device.host_set(mask) & allowed
    if not cpus:  # toybox: perror_exit("failed to %s pid %d's affinity", "set", pid)
        pid = rest[1] if "p" in flags and len(rest) > 1 else str(os.getpid())
        await io.complain(f"taskset: failed to set pid {pid}'s affinity: Invalid argument")
        return 1
    if "p" in flags:
        pid = rest[1] if len(rest) > 1 else ""
        if pid != str(os.getpid()):
            # Only the shell itself may be repinned: other pids are the host's processes.
            await io.complain(f"taskset: failed to set pid {pid}'s affinity: Operation not permitted")
            return 1
        old = sh.affinity or allowed
        sh.affinity = cpus
        await io.say(f"pid {pid}'s current affinity mask: {cpus_of_device.device_mask(old):x}\n"
                     f"pid {pid}'s new affinity mask: {cpus_of_device.device_mask(cpus):x}\n")
        return 0
    if len(rest) < 2:
        await io.complain("taskset: Needs 2 args")
        return 1
    child = sh.subshell(sh.args)
    child.affinity = cpus
    return await child.run_argv(rest[1:], io)


async def _show_affinity(pid: str, cpus_of_device: CpuSlice, io: Streams) -> int:
    try:
        cpus = os.sched_getaffinity(int(pid))
    except (ValueError, ProcessLookupError):
        await io.complain(f"taskset: failed to get pid {pid}'s affinity: No such process")
        return 1
    await io.say(f"pid {pid}'s current affinity mask: {cpus_of_device.device_mask(cpus):x}\n")
    return 0


async def nproc(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    cpus_of_device = device_cpus(sh)
    if "--all" in argv:
        count = cpus_of_device.count
    else:
        usable = sh.affinity or os.sched_getaffinity(0)
        count = bin(cpus_of_device.device_mask(usable)).count("1") or cpus_of_device.count
    await io.say(f"{count}\n")
    return 0


async def uname(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, _rest = split_flags(argv[1:], "snrvmoap")
    host = os.uname()
    fields = {"s": "Linux", "n": "localhost", "r": host.release, "v": host.version,
              "m": "x86_64", "p": "x86_64", "o": "Toybox"}
    order = "snrvmo" if "a" in flags else "".join(f for f in "snrvmpo" if f in flags) or "s"
    await io.say(" ".join(fields[f] for f in order) + "\n")
    return 0


ID_GROUPS = ("2000(shell),1004(input),1007(log),1011(adb),1015(sdcard_rw),1028(sdcard_r),"
             "1078(ext_data_rw),1079(ext_obb_rw),3001(net_bt_admin),3002(net_bt),3003(inet),"
             "3006(net_bw_stats),3009(readproc),3011(uhid),3012(readtracefs)")


async def id_(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    flags, _rest = split_flags(argv[1:], "ugnGZr")
    root = sh.uid == 0
    name, uid = ("root", 0) if root else ("shell", SHELL_UID)
    if "n" in flags and ({"u", "g"} & flags):
        await io.say(f"{name}\n")
    elif "u" in flags or "g" in flags:
        await io.say(f"{uid}\n")
    elif root:  # inside Magisk's su
        await io.say("uid=0(root) gid=0(root) groups=0(root) context=u:r:magisk:s0\n")
    else:
        await io.say(f"uid={SHELL_UID}(shell) gid={SHELL_UID}(shell) groups={ID_GROUPS} "
                     "context=u:r:shell:s0\n")
    return 0


async def whoami(argv, sh, io: Streams) -> int:
    await io.say("root\n" if sh.uid == 0 else "shell\n")
    return 0


async def sleep(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    total_s = 0.0
    for arg in argv[1:]:
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", arg)
        if not match:
            await io.complain(f"sleep: bad '{arg}'")
            return 1
        total_s += float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    await asyncio.sleep(total_s)
    return 0


async def date(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    fmt = next((a[1:] for a in argv[1:] if a.startswith("+")), "%a %b %e %H:%M:%S %Z %Y")
    await io.say(time.strftime(fmt) + "\n")
    return 0


async def toybox(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    """`toybox` lists its applets; `toybox APPLET ARGS` runs one (a replayed phone's list)."""
    applets = sorted(name for name in BUILTINS if name != "toybox" and sh.ctx.has_tool(name))
    if len(argv) == 1:
        await io.say("".join(f"{name}\n" for name in applets))
        return 0
    if argv[1] not in applets:
        await io.complain(f"toybox: Unknown command {argv[1]}")
        return 1
    return await BUILTINS[argv[1]](argv[1:], sh, io)


BUILTINS = {
    "toybox": toybox,
    "cat": cat, "head": head, "tail": tail, "grep": grep, "wc": wc, "sha256sum": sha256sum,
    "ls": ls, "stat": stat_, "chmod": chmod, "mkdir": mkdir, "rm": rm, "rmdir": rmdir,
    "touch": touch, "cp": cp, "mv": mv, "df": df, "taskset": taskset, "nproc": nproc,
    "uname": uname, "id": id_, "whoami": whoami, "sleep": sleep, "date": date,
}
