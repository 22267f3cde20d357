"""The virtual device's ``/system/bin/sh``: runs every ``shell:``, ``shell,v2:`` and ``exec:`` stream.

:func:`run_command` is the one entry point the ADB transport calls. The interpreter here does
expansion, redirections, pipes and ``&&``/``||``; builtins live in ``shell_builtins`` (the shell's
own), ``toybox`` (file and system tools) and ``android_tools`` (getprop, dumpsys, ...);
executing files lives in ``process``.
"""
from __future__ import annotations

import glob
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from device_agents.virtual import android_tools, shell_builtins, toybox
from device_agents.virtual.faults import FaultWatcher
from device_agents.virtual.process import exec_file
from device_agents.virtual.sandbox import Sandbox, VirtualDeviceConfig
from device_agents.virtual.shell_io import SHELL_NAME, Capture, Streams, discard
from device_agents.virtual.shell_parser import (
    AndOr, Pipeline, Redirection, ShellSyntaxError, SimpleCommand, Word, parse,
)

DEFAULT_ENV = {
    "PATH": "/product/bin:/apex/com.android.runtime/bin:/apex/com.android.art/bin:"
            "/system_ext/bin:/system/bin:/system/xbin:/odm/bin:/vendor/bin:/vendor/xbin",
    "HOME": "/",
    "TMPDIR": "/data/local/tmp",
    "ANDROID_DATA": "/data",
    "ANDROID_ROOT": "/system",
    "ANDROID_STORAGE": "/storage",
    "EXTERNAL_STORAGE": "/sdcard",
    "ASEC_MOUNTPOINT": "/mnt/asec",
    "HOSTNAME": "localhost",
    "USER": "shell",
    "LOGNAME": "shell",
    "SHELL": "/bin/sh",
    "TERM": "dumb",
}
DEV_NULL = "/dev/null"
GLOB_CHARS = re.compile(r"[*?\[]")

Builtin = Callable[[list[str], "Interpreter", Streams], Awaitable[int]]


@dataclass
class ShellContext:
    sandbox: Sandbox
    config: VirtualDeviceConfig
    faults: FaultWatcher
    drop_connection: Callable[[], None]   # closes this device's TCP link now (used by a fault)
    cwd: str = "/"
    # sha256 -> program the device may run on the host; None: only what bench ships
    # (process.trusted_programs). Tests of the exec plumbing register programs of their own.
    programs: dict | None = None

    def has_tool(self, name: str) -> bool:
        """Whether this phone has the tool: `su` only when rooted; a toybox applet only when a
        replayed phone's toybox lists it (an old toybox lacks taskset, for one)."""
        if name == "su":
            return self.config.rooted
        if name in toybox.BUILTINS and name != "toybox" and self.sandbox.profile is not None:
            applets = self.sandbox.profile.toybox_applets
            return applets is None or name in applets
        return True


class ExitShell(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def all_builtins() -> dict[str, Builtin]:
    table: dict[str, Builtin] = {}
    for module in (shell_builtins, toybox, android_tools):
        table.update(module.BUILTINS)
    return table


BUILTINS = all_builtins()


@dataclass
class Interpreter:
    ctx: ShellContext
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    args: list[str] = field(default_factory=lambda: [SHELL_NAME])  # $0 $1 ...
    affinity: set[int] | None = None  # CPUs children run on (set by taskset)
    last_status: int = 0
    uid: int = toybox.SHELL_UID  # 0 inside `su` on a rooted device
    # This shell's working directory; starts at ctx.cwd and, as in sh, `cd` changes only it.
    cwd: str = ""
    # Where $(...) sends its stderr: the stderr of the command being expanded.
    expansion_err: Callable[[bytes], Awaitable[None]] = discard

    def __post_init__(self) -> None:
        self.cwd = self.cwd or self.ctx.cwd

    # -- state --------------------------------------------------------------------------------

    def host_path(self, device_path: str) -> Path:
        return self.ctx.sandbox.host_path(device_path, self.cwd)

    def exported_env(self) -> dict[str, str]:
        return dict(self.env)

    def writable_path(self, device_path: str) -> Path:
        return self.ctx.sandbox.writable_path(device_path, self.cwd, root=self.uid == 0)

    def subshell(self, args: list[str]) -> "Interpreter":
        return Interpreter(self.ctx, dict(self.env), args, self.affinity, self.last_status,
                           self.uid, self.cwd)

    # -- running ------------------------------------------------------------------------------
    async def run_script(self, text: str, io: Streams) -> int:
        try:
            items = parse(text)
        except ShellSyntaxError as e:
            await io.complain(f"{SHELL_NAME}: {e.line}: syntax error: {e.message}")
            self.last_status = 2
            return 2
        for item in items:
            await self.run_and_or(item, io)
        return self.last_status

    async def run_script_file(self, text: str, argv: list[str], io: Streams,
                              extra_env: dict[str, str]) -> int:
        """Runs a shell script file in a child shell (positional args = argv)."""
        child = self.subshell(argv)
        child.env.update(extra_env)
        try:
            return await child.run_script(text, io)
        except ExitShell as e:
            return e.status

    async def run_and_or(self, node: AndOr, io: Streams) -> int:
        status = await self.run_pipeline(node.first, io)
        for op, pipeline in node.rest:
            if (op == "&&") == (status == 0):
                status = await self.run_pipeline(pipeline, io)
        return status

    async def run_pipeline(self, pipeline: Pipeline, io: Streams) -> int:
        # Stages run one after another; each one's stdout is the next one's stdin.
        stdin = io.stdin
        for i, command in enumerate(pipeline.commands):
            last = i == len(pipeline.commands) - 1
            capture = None if last else Capture()
            stage_io = Streams(stdin, io.out if last else capture, io.err)
            if len(pipeline.commands) > 1:
                # Each pipeline stage runs in a subshell: `exit` there ends only that stage.
                try:
                    status = await self.run_simple(command, stage_io)
                except ExitShell as e:
                    status = e.status
            else:
                status = await self.run_simple(command, stage_io)
            self.last_status = status
            if capture is not None:
                stdin = capture.value()
        return self.last_status

    async def run_simple(self, command: SimpleCommand, io: Streams) -> int:
        self.expansion_err = io.err
        assignments = {a.name: " ".join(await self.expand_word(a.value, split=False))
                       for a in command.assignments}
        argv: list[str] = []
        for word in command.words:
            argv.extend(await self.expand_word(word))
        opened: list = []
        try:
            try:
                io = await self.apply_redirections(command.redirections, io, opened)
            except _RedirectError as e:
                await io.complain(f"{SHELL_NAME}: {e}")
                return 1
            if not argv:
                self.env.update(assignments)
                return 0
            return await self.run_argv(argv, io, assignments)
        finally:
            for f in opened:
                f.close()

    async def run_argv(self, argv: list[str], io: Streams, extra_env: dict[str, str] | None = None) -> int:
        """Runs one command (builtin, script or program) given as words."""
        extra_env = extra_env or {}
        name = argv[0]
        if "/" in name:
            return await exec_file(name, argv[1:], self, io, extra_env)
        builtin = BUILTINS.get(name) if self.ctx.has_tool(name) else None
        if builtin is not None:
            saved = {k: self.env.get(k) for k in extra_env}
            self.env.update(extra_env)
            try:
                return await builtin(argv, self, io)
            finally:
                for k, v in saved.items():
                    if v is None:
                        self.env.pop(k, None)
                    else:
                        self.env[k] = v
        found = self.find_in_path(name)
        if found is not None:
            return await exec_file(found, argv[1:], self, io, extra_env)
        await io.complain(f"{SHELL_NAME}: {name}: inaccessible or not found")
        return 127

    def find_in_path(self, name: str) -> str | None:
        for directory in self.env.get("PATH", "").split(":"):
            if not directory:
                continue
            candidate = posixpath.join(directory, name)
            try:
                if self.host_path(candidate).is_file():
                    return candidate
            except PermissionError:
                continue
        return None

    # -- expansion ------------------------------------------------------------------------------
    async def param(self, name: str) -> str:
        if name == "?":
            return str(self.last_status)
        if name == "$":
            return str(os.getpid())
        if name == "#":
            return str(len(self.args) - 1)
        if name in ("@", "*"):
            return " ".join(self.args[1:])
        if name.isdigit():
            i = int(name)
            return self.args[i] if i < len(self.args) else ""
        return self.env.get(name, "")

    async def expand_word(self, word: Word, split: bool = True) -> list[str]:
        """Expands parameters and $(...); splits unquoted results into fields and globs them."""
        fields: list[list[tuple[str, bool]]] = []  # each field: (text, may_glob) pieces
        current: list[tuple[str, bool]] = []
        present = False  # a quoted piece makes a field exist even when empty

        def close() -> None:
            nonlocal current, present
            if present or any(text for text, _ in current):
                fields.append(current)
            current, present = [], False

        for part in word.parts:
            if part.kind == "lit":
                current.append((part.text, not part.quoted))
                present = present or part.quoted or bool(part.text)
                continue
            if part.kind == "var" and part.text == "@" and part.quoted:
                for i, arg in enumerate(self.args[1:]):
                    if i:
                        close()
                    current.append((arg, False))
                    present = True
                continue
            if part.kind == "var":
                value = await self.param(part.text)
                if not value and part.default is not None:
                    value = " ".join(await self.expand_word(part.default, split=False))
            else:
                value = await self.command_substitution(part.text)
            if part.quoted or not split:
                current.append((value, False))
                present = True
                continue
            for i, piece in enumerate(re.split(r"[ \t\n]+", value)):
                if i:
                    close()
                if piece:
                    current.append((piece, False))
        close()
        words: list[str] = []
        for pieces in fields:
            text = "".join(t for t, _ in pieces)
            globbable = split and any(g and GLOB_CHARS.search(t) for t, g in pieces)
            words.extend(self.glob(pieces) if globbable else [text])
        return words

    def glob(self, pieces: list[tuple[str, bool]]) -> list[str]:
        pattern = "".join(t if g else glob.escape(t) for t, g in pieces)
        literal = "".join(t for t, _ in pieces)
        absolute = pattern.startswith("/")
        device_pattern = posixpath.normpath(pattern if absolute else posixpath.join(self.cwd, pattern))
        if device_pattern.startswith(".."):
            return [literal]
        matches = sorted(glob.glob(device_pattern.lstrip("/"), root_dir=self.ctx.sandbox.root))
        if not matches:
            return [literal]
        if absolute:
            return ["/" + m for m in matches]
        return [posixpath.relpath("/" + m, self.cwd) for m in matches]

    async def command_substitution(self, text: str) -> str:
        capture = Capture()
        child = self.subshell(self.args)
        try:
            self.last_status = await child.run_script(text, Streams(b"", capture, self.expansion_err))
        except ExitShell as e:
            self.last_status = e.status
        return capture.value().decode(errors="replace").rstrip("\n")

    # -- redirections ----------------------------------------------------------------------------
    async def apply_redirections(self, redirections: list[Redirection], io: Streams, opened: list) -> Streams:
        io = Streams(io.stdin, io.out, io.err)
        for r in redirections:
            target = " ".join(await self.expand_word(r.target, split=False))
            if r.op in (">&", "<&"):
                if target == "-":
                    writer = discard
                elif target in ("1", "2"):
                    writer = io.out if target == "1" else io.err
                else:
                    raise _RedirectError(f"{target}: bad file descriptor")
                if r.fd == 1:
                    io.out = writer
                elif r.fd == 2:
                    io.err = writer
                continue
            if r.op == "<":
                io.stdin = self._read_for_redirect(target)
                continue
            writer = self._open_for_redirect(target, append=r.op == ">>", opened=opened)
            if r.fd == 1:
                io.out = writer
            elif r.fd == 2:
                io.err = writer
        return io

    def _read_for_redirect(self, target: str) -> bytes:
        if target == DEV_NULL:
            return b""
        try:
            return self.host_path(target).read_bytes()
        except OSError as exc:
            raise _redirect_error("open", target, exc) from None

    def _open_for_redirect(self, target: str, append: bool, opened: list):
        if target == DEV_NULL:
            return discard
        try:
            f = open(self.writable_path(target), "ab" if append else "wb")
        except OSError as exc:
            raise _redirect_error("create", target, exc) from None
        opened.append(f)

        async def write(data: bytes) -> None:
            f.write(data)
            f.flush()
        return write


class _RedirectError(Exception):
    pass


def _redirect_error(verb: str, target: str, exc: OSError) -> "_RedirectError":
    """mksh's wording for a redirection it cannot open (`verb`: open for <, create for >)."""
    if isinstance(exc, PermissionError):
        why = "Permission denied"
    elif isinstance(exc, IsADirectoryError):
        why = "Is a directory"
    else:
        why = "No such file or directory"
    return _RedirectError(f"can't {verb} {target}: {why}")


def sync_thermal_files(ctx: ShellContext) -> None:
    """Keeps /sys/class/thermal in line with the temperature fault (rewritten only on change)."""
    ctx.sandbox.ensure_temperature(ctx.faults.current().temperature_c)


async def run_command(command: str, ctx: ShellContext,
                      stdout: Callable[[bytes], Awaitable[None]],
                      stderr: Callable[[bytes], Awaitable[None]],
                      stdin: bytes = b"") -> int:
    """Runs one adb shell command line as ``/system/bin/sh -c``; returns the exit status 0..255.

    If the task is cancelled (the host closed the stream), running children are killed and the
    cancellation is re-raised.
    """
    sync_thermal_files(ctx)
    shell = Interpreter(ctx)
    io = Streams(stdin, stdout, stderr)
    if not command.strip() and stdin:
        # `adb shell < script`: an interactive shell reading its commands from stdin.
        command, io.stdin = stdin.decode(errors="replace"), b""
    try:
        status = await shell.run_script(command, io)
    except ExitShell as e:
        status = e.status
    return status & 0xFF
