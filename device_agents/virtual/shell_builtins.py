"""Builtins of the shell itself (mksh): echo, test/[, cd, exit, export, sh, exec, ..."""
from __future__ import annotations

import os
import posixpath
import stat
from typing import TYPE_CHECKING

from device_agents.virtual.shell_io import SHELL_NAME, Streams

if TYPE_CHECKING:  # pragma: no cover
    from device_agents.virtual.shell import Interpreter


async def echo(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    newline, escapes = True, False
    while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
        flag = args.pop(0)
        newline = newline and "n" not in flag
        escapes = "e" in flag or (escapes and flag != "-E")
    text = " ".join(args)
    if escapes:
        text = text.encode().decode("unicode_escape", errors="replace")
    await io.say(text + ("\n" if newline else ""))
    return 0


async def true(argv, sh, io) -> int:
    return 0


async def false(argv, sh, io) -> int:
    return 1


async def cd(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    target = argv[1] if len(argv) > 1 else sh.env.get("HOME", "/")
    new_cwd = posixpath.normpath(posixpath.join(sh.cwd, target))
    if new_cwd.startswith("//"):
        new_cwd = new_cwd[1:]
    try:
        host = sh.host_path(new_cwd)
    except PermissionError:
        await io.complain(f"{SHELL_NAME}: cd: {target}: Permission denied")
        return 2
    if not host.exists():
        await io.complain(f"{SHELL_NAME}: cd: {target}: No such file or directory")
        return 2
    if not host.is_dir():
        await io.complain(f"{SHELL_NAME}: cd: {target}: Not a directory")
        return 2
    sh.cwd = new_cwd
    sh.env["PWD"] = new_cwd
    return 0


async def pwd(argv, sh: "Interpreter", io: Streams) -> int:
    await io.say(sh.cwd + "\n")
    return 0


async def exit_(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    from device_agents.virtual.shell import ExitShell
    status = sh.last_status
    if len(argv) > 1:
        try:
            status = int(argv[1])
        except ValueError:
            await io.complain(f"{SHELL_NAME}: exit: {argv[1]}: bad number")
            status = 2
    raise ExitShell(status & 0xFF)


async def export(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    for arg in argv[1:]:
        if arg == "-p":
            continue
        name, sep, value = arg.partition("=")
        if sep:
            sh.env[name] = value
        else:
            sh.env.setdefault(name, "")
    if len(argv) == 1:
        for name in sorted(sh.env):
            await io.say(f"export {name}={sh.env[name]}\n")
    return 0


async def unset(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    for name in argv[1:]:
        sh.env.pop(name, None)
    return 0


async def sh_(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    """``sh -c 'cmd' [name args...]`` or ``sh script [args]``: a child shell."""
    from device_agents.virtual.shell import ExitShell
    args = argv[1:]
    if args and args[0] == "-c":
        if len(args) < 2:
            await io.complain(f"{SHELL_NAME}: -c: option requires an argument")
            return 2
        child = sh.subshell(args[2:] or [SHELL_NAME])
        try:
            return await child.run_script(args[1], io)
        except ExitShell as e:
            return e.status
    if args:
        path = args[0]
        try:
            text = sh.host_path(path).read_text(errors="replace")
        except (OSError, PermissionError):
            await io.complain(f"{SHELL_NAME}: {path}: No such file or directory")
            return 127
        return await sh.run_script_file(text, args, io, {})
    if io.stdin:
        child = sh.subshell([SHELL_NAME])
        try:
            return await child.run_script(io.stdin.decode(errors="replace"), Streams(b"", io.out, io.err))
        except ExitShell as e:
            return e.status
    return 0


async def exec_(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    from device_agents.virtual.shell import ExitShell
    if len(argv) == 1:
        return 0
    raise ExitShell(await sh.run_argv(argv[1:], io))


async def command(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    from device_agents.virtual.shell import BUILTINS
    args = argv[1:]
    if args and args[0] == "-v":
        status = 0
        for name in args[1:]:
            if name in BUILTINS and sh.ctx.has_tool(name):
                await io.say(name + "\n")
            elif (found := sh.find_in_path(name)) is not None:
                await io.say(found + "\n")
            else:
                status = 1
        return status
    return await sh.run_argv(args, io) if args else 0


async def which(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    status = 0
    for name in argv[1:]:
        found = sh.find_in_path(name) or (f"/system/bin/{name}" if _is_tool(name, sh) else None)
        if found is None:
            status = 1
        else:
            await io.say(found + "\n")
    return status


def _is_tool(name: str, sh: "Interpreter") -> bool:
    from device_agents.virtual.shell import BUILTINS
    return name in BUILTINS and name not in SHELL_ONLY and sh.ctx.has_tool(name)


# -- test / [ ----------------------------------------------------------------------------------
class _TestSyntax(Exception):
    pass


def _file_test(op: str, sh: "Interpreter", path: str) -> bool:
    try:
        host = sh.host_path(path)
        st = os.stat(host)
    except (OSError, PermissionError):
        return False
    mode = st.st_mode
    return {
        "-e": True,
        "-f": stat.S_ISREG(mode),
        "-d": stat.S_ISDIR(mode),
        "-x": bool(mode & 0o111),
        "-r": bool(mode & 0o444),
        "-w": bool(mode & 0o222),
        "-s": st.st_size > 0,
    }[op]


FILE_OPS = ("-e", "-f", "-d", "-x", "-r", "-w", "-s")
INT_OPS = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__,
           "-gt": int.__gt__, "-le": int.__le__, "-ge": int.__ge__}


def evaluate_test(args: list[str], sh: "Interpreter") -> bool:
    if not args:
        return False
    if args[0] == "!":
        return not evaluate_test(args[1:], sh)
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, operand = args
        if op in FILE_OPS:
            return _file_test(op, sh, operand)
        if op == "-z":
            return operand == ""
        if op == "-n":
            return operand != ""
        raise _TestSyntax(f"{op}: unknown operand")
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "=="):
            return left == right
        if op == "!=":
            return left != right
        if op in INT_OPS:
            try:
                return INT_OPS[op](int(left), int(right))
            except ValueError:
                raise _TestSyntax("bad number")
        raise _TestSyntax(f"{op}: unknown operand")
    for joiner in ("-o", "-a"):
        if joiner in args:
            i = args.index(joiner)
            left, right = evaluate_test(args[:i], sh), evaluate_test(args[i + 1:], sh)
            return (left or right) if joiner == "-o" else (left and right)
    raise _TestSyntax("too many arguments")


async def test(argv: list[str], sh: "Interpreter", io: Streams) -> int:
    args = argv[1:]
    if argv[0] == "[":
        if not args or args[-1] != "]":
            await io.complain(f"{SHELL_NAME}: [: missing ]")
            return 2
        args = args[:-1]
    try:
        return 0 if evaluate_test(args, sh) else 1
    except _TestSyntax as e:
        await io.complain(f"{SHELL_NAME}: {argv[0]}: {e}")
        return 2


BUILTINS = {
    "echo": echo, "true": true, "false": false, ":": true,
    "cd": cd, "pwd": pwd, "exit": exit_, "export": export, "unset": unset,
    "sh": sh_, "exec": exec_, "command": command, "which": which,
    "test": test, "[": test,
}
SHELL_ONLY = {"cd", "exit", "export", "unset", "exec", "command", ":", "pwd"}
