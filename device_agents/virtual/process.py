"""Executing a file on the virtual device, as /system/bin/sh + the kernel would.

Decides, like execve(2) on a phone, whether a file can run: missing (127), no x bit (126), an
ELF (126, the ``not executable: 64-bit ELF file`` of a real device), a ``#!`` script.

The device must never give its host away, so the only files that become host processes are the
programs bench ships for it, recognised by content hash (``trusted_programs``): the shipped
``benchmark_model`` runs as a host child of the device process, from bench's own code, in
isolated mode (``python -I``: no script folder, no PYTHON* variables, no user site) with the
device process's environment, never the device shell's (LD_PRELOAD, PYTHONPATH... set on the
device stay on the device). Anything else pushed to the device (a Python script, an ELF) answers
as Android answers for a program it cannot run. Shell scripts run in the emulated shell.

Fault switches for ``benchmark_model`` act here on the real child: a real SIGSEGV, a real
SIGSTOP, a real dropped link.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import posixpath
import resource
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device_agents.virtual.shell_io import SHELL_NAME, Streams

if TYPE_CHECKING:  # pragma: no cover
    from device_agents.virtual.shell import Interpreter

# The directory that holds the ``device_agents`` package: children import it from there.
PACKAGE_PARENT_DIR = str(Path(__file__).resolve().parents[2])
SHIPPED_BIN_DIR = Path(__file__).resolve().parents[1] / "bin"
BENCHMARK_PROGRAM = "benchmark_model"


@dataclass(frozen=True)
class ShippedProgram:
    """A program the device may run on the host: a function of bench's code, called with argv."""
    entry_point: str            # "module:function"
    is_benchmark: bool = False  # the benchmark_model fault switches act on it


# The programs bench ships for its devices, by file name under bin/<abi>/.
SHIPPED_PROGRAMS = {
    BENCHMARK_PROGRAM: ShippedProgram("device_agents.benchmark_model.main:main", is_benchmark=True),
    # LiteRT's flavour (`bench lab up --flavour litert`); pushed as benchmark_model like any other.
    "benchmark_litert_model": ShippedProgram("device_agents.benchmark_model.litert_main:main",
                                             is_benchmark=True),
}
# What the isolated child runs: bench's code from PACKAGE_PARENT_DIR, argv = [device path, args].
_BOOTSTRAP = ("import sys; sys.path.insert(0, {parent!r}); from {module} import {function}; "
              "sys.exit({function}(sys.argv[1:]))")
ELF_MAGIC = b"\x7fELF"
ELF_MACHINE_X86_64 = 62
READ_CHUNK_BYTES = 65536

# What mksh prints when a foreground child dies by a signal.
SIGNAL_MESSAGES = {
    signal.SIGHUP: "Hangup",
    signal.SIGINT: "",
    signal.SIGQUIT: "Quit",
    signal.SIGILL: "Illegal instruction",
    signal.SIGTRAP: "Trace/breakpoint trap",
    signal.SIGABRT: "Aborted",
    signal.SIGBUS: "Bus error",
    signal.SIGFPE: "Floating point exception",
    signal.SIGKILL: "Killed",
    signal.SIGSEGV: "Segmentation fault",
    signal.SIGPIPE: "",
    signal.SIGALRM: "Alarm clock",
    signal.SIGTERM: "Terminated",
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "File size limit exceeded",
}


@dataclass
class Script:
    interpreter: str  # basename of the interpreter ("python3", "sh", ...)
    interpreter_path: str


def read_shebang(head: bytes) -> Script | None:
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
    words = line.split()
    if not words:
        return None
    path = words[0]
    # "#!/usr/bin/env python3": the program is env's first argument.
    if posixpath.basename(path) == "env" and len(words) > 1:
        return Script(posixpath.basename(words[1]), words[1])
    return Script(posixpath.basename(path), path)


def elf_refusal(head: bytes) -> str | None:
    """Why the shell refuses an ELF file; the virtual device runs no native binaries at all."""
    if not head.startswith(ELF_MAGIC) or len(head) < 20:
        return None
    bits = "64-bit" if head[4] == 2 else "32-bit"
    byteorder = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], byteorder)
    if machine != ELF_MACHINE_X86_64:
        return f"not executable: {bits} ELF file"
    # An x86_64 binary would run on the host outside the sandbox, so it is refused too.
    return "can't execute: Exec format error"


async def exec_file(path: str, args: list[str], sh: "Interpreter", io: Streams,
                    extra_env: dict[str, str]) -> int:
    """Runs the file at device ``path`` with ``args`` (argv[1:]); returns the exit status."""
    try:
        host = sh.host_path(path)
    except PermissionError:
        await io.complain(f"{SHELL_NAME}: {path}: can't execute: Permission denied")
        return 126
    try:
        st = host.stat()
    except OSError:
        await io.complain(f"{SHELL_NAME}: {path}: inaccessible or not found")
        return 127
    if stat.S_ISDIR(st.st_mode):
        await io.complain(f"{SHELL_NAME}: {path}: can't execute: Is a directory")
        return 126
    if not st.st_mode & 0o111:
        await io.complain(f"{SHELL_NAME}: {path}: can't execute: Permission denied")
        return 126
    with open(host, "rb") as f:
        head = f.read(256)
    programs = trusted_programs() if sh.ctx.programs is None else sh.ctx.programs
    program = programs.get(file_sha256(host))
    if program is not None:
        return await run_shipped_program(program, path, args, sh, io)
    refusal = elf_refusal(head)
    if refusal:
        await io.complain(f"{SHELL_NAME}: {path}: {refusal}")
        return 126
    script = read_shebang(head)
    if script is None or script.interpreter in ("sh", "mksh", "bash", "ash"):
        # A file without #! is run by the shell itself (ENOEXEC fallback), like mksh does.
        text = host.read_text(errors="replace")
        return await sh.run_script_file(text, [path, *args], io, extra_env)
    # Any other interpreter (python3, /usr/bin/env, perl...) does not exist on the device: the
    # kernel's execve fails with ENOENT for a missing #! interpreter, and the shell says so.
    await io.complain(f"{SHELL_NAME}: {path}: No such file or directory")
    return 127


@functools.lru_cache(maxsize=1)
def trusted_programs() -> dict[str, ShippedProgram]:
    """sha256 of each program file bench ships for its devices -> the program."""
    programs = {}
    for path in sorted(SHIPPED_BIN_DIR.glob("*/*")):
        program = SHIPPED_PROGRAMS.get(path.name)
        if program is not None and path.is_file():
            programs[file_sha256(path)] = program
    return programs


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def child_environment(sh: "Interpreter") -> dict[str, str]:
    """The device process's own environment (the lab's), plus where the device's / is."""
    env = dict(os.environ)
    env["BENCH_DEVICE_ROOT"] = str(sh.ctx.sandbox.root)
    return env


def _prepare_child(affinity: set[int] | None):
    def prepare() -> None:
        # No core files: a faulted crash must not drop a huge "core" into the sandbox.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if affinity:
            os.sched_setaffinity(0, affinity)
    return prepare


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _pump(reader: asyncio.StreamReader, writer) -> None:
    while chunk := await reader.read(READ_CHUNK_BYTES):
        await writer(chunk)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        proc.stdin.close()


async def run_shipped_program(program: ShippedProgram, device_path: str, args: list[str],
                              sh: "Interpreter", io: Streams) -> int:
    faults = sh.ctx.faults.current()
    # The benchmark faults hit benchmark runs, not `benchmark_model --help` (bench's probe of
    # what the binary is), which a hung or crashing model would not stop on a phone either.
    is_benchmark = program.is_benchmark and not (args and args[0] == "--help")
    module, _, function = program.entry_point.partition(":")
    bootstrap = _BOOTSTRAP.format(parent=PACKAGE_PARENT_DIR, module=module, function=function)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", bootstrap, device_path, *args,
        cwd=str(sh.host_path(sh.cwd)),
        env=child_environment(sh),
        stdin=asyncio.subprocess.PIPE if io.stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so closing the stream kills all of it
        preexec_fn=_prepare_child(sh.affinity),
    )
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    output_path = _flag_value(args, "--output_filepath") if is_benchmark else None
    output_fault = sh.ctx.faults.output_fault_now() if output_path else None
    if output_fault == "crash":  # dies while it runs: no output file, exit 139
        timers.append(loop.call_later(OUTPUT_CRASH_AFTER_S, _send, proc, signal.SIGSEGV))
    if is_benchmark:
        if faults.benchmark_crash_after_s is not None:
            timers.append(loop.call_later(faults.benchmark_crash_after_s, _send, proc, signal.SIGSEGV))
        if faults.drop_during_benchmark_s is not None:
            timers.append(loop.call_later(faults.drop_during_benchmark_s, sh.ctx.drop_connection))
        if faults.benchmark_hang:
            _send(proc, signal.SIGSTOP)
    try:
        jobs = [_pump(proc.stdout, io.out), _pump(proc.stderr, io.err)]
        if io.stdin:
            jobs.append(_feed(proc, io.stdin))
        await asyncio.gather(*jobs)
        returncode = await proc.wait()
    except asyncio.CancelledError:
        # The host closed the stream: adbd kills the command, and so do we (before re-raising,
        # so that nothing is left running once the task is done).
        _kill_group(proc)
        await proc.wait()
        raise
    finally:
        for timer in timers:
            timer.cancel()
    if output_fault in ("short", "missing") and returncode == 0:
        _spoil_output(sh, output_path, output_fault)
    if returncode < 0:
        signum = -returncode
        try:
            message = SIGNAL_MESSAGES.get(signal.Signals(signum), f"Signal {signum}")
        except ValueError:
            message = f"Signal {signum}"
        if message:
            await io.complain(message)
        return 128 + signum
    return returncode & 0xFF


OUTPUT_CRASH_AFTER_S = 0.05  # the "crash" output fault: within the launch's start-up


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag=value` as the tool would take it (the first one)."""
    prefix = flag + "="
    return next((arg[len(prefix):] for arg in args if arg.startswith(prefix)), None)


def _spoil_output(sh: "Interpreter", device_path: str, fault: str) -> None:
    """The output faults on the file the launch wrote: cut to half, or gone."""
    try:
        host = sh.host_path(device_path)
        if fault == "missing":
            host.unlink(missing_ok=True)
        elif host.is_file():
            size = host.stat().st_size
            with open(host, "r+b") as out:
                out.truncate(size // 2)
    except (OSError, ValueError):
        pass


def _send(proc: asyncio.subprocess.Process, signum: int) -> None:
    if proc.returncode is None:
        try:
            os.kill(proc.pid, signum)
        except ProcessLookupError:
            pass
