"""The ``shell:``, ``shell,v2,...:`` and ``exec:`` services: run a command, stream its output.

The command itself is run by ``device_agents.virtual.shell.run_command``; this module only
frames its output for the host (raw bytes, or shell protocol v2 packets) and gathers stdin.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Callable

from device_agents.virtual.faults import FaultWatcher
from device_agents.virtual.sandbox import Sandbox, VirtualDeviceConfig
from device_agents.virtual.transport import Stream

log = logging.getLogger("bench.virtual.shell_service")

# Shell protocol v2 packet ids (shell_protocol.h).
ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE = 0, 1, 2, 3, 4, 5
_PACKET_HEADER = struct.Struct("<BI")
# The adb CLI sends its stdin (then close-stdin) right after the stream opens; adbutils sends
# nothing at all. So a command waits this long for a first stdin packet, then runs without one.
STDIN_GRACE_S = 0.02
EXIT_SERVICE_ERROR = 126  # adbd's status when the service itself cannot start


def v2_packet(packet_id: int, data: bytes) -> bytes:
    return _PACKET_HEADER.pack(packet_id, len(data)) + data


@dataclass
class ShellRequest:
    mode: str  # "shell" (legacy, merged raw output), "v2" (packets, exit code), "exec" (stdout only)
    command: str
    args: tuple[str, ...] = ()


def parse_shell_service(service: str) -> ShellRequest | None:
    """``shell:cmd`` / ``shell,v2,raw,TERM=x:cmd`` / ``exec:cmd``; None if not a shell service."""
    if service.startswith("exec:"):
        return ShellRequest("exec", service[len("exec:"):])
    if not service.startswith("shell"):
        return None
    head, colon, command = service.partition(":")
    if not colon or (head != "shell" and not head.startswith("shell,")):
        return None
    args = tuple(a for a in head.split(",")[1:] if a)
    return ShellRequest("v2" if "v2" in args else "shell", command, args)


class StdinCollector:
    """Reads v2 packets from the host: stdin data until close-stdin; the rest is discarded."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.data = bytearray()
        self.first_packet = asyncio.Event()
        self.stdin_closed = asyncio.Event()

    async def run(self) -> None:
        try:
            while True:
                packet_id, length = _PACKET_HEADER.unpack(await self.stream.read_exactly(5))
                payload = await self.stream.read_exactly(length) if length else b""
                if not self.stdin_closed.is_set():
                    if packet_id == ID_STDIN:
                        self.data += payload
                        self.first_packet.set()
                    elif packet_id == ID_CLOSE_STDIN:
                        self.first_packet.set()
                        self.stdin_closed.set()
                # Window-size changes mean nothing without a pty; stdin after close is dropped.
        except (EOFError, ConnectionError):
            pass
        finally:
            self.first_packet.set()
            self.stdin_closed.set()

    async def stdin(self) -> bytes:
        try:
            await asyncio.wait_for(self.first_packet.wait(), STDIN_GRACE_S)
        except asyncio.TimeoutError:
            return b""
        await self.stdin_closed.wait()
        return bytes(self.data)


async def _drain_input(stream: Stream) -> None:
    """Acknowledge and drop whatever the host sends (raw services take no stdin here)."""
    try:
        while await stream.read_some():
            pass
    except ConnectionError:
        pass


async def serve_shell(request: ShellRequest, stream: Stream, sandbox: Sandbox,
                      config: VirtualDeviceConfig, faults: FaultWatcher,
                      drop_connection: Callable[[], None]) -> None:
    # Imported here so that a device whose shell cannot load still serves sync (push/pull).
    from device_agents.virtual.shell import ShellContext, run_command

    ctx = ShellContext(sandbox=sandbox, config=config, faults=faults,
                       drop_connection=drop_connection)
    if request.mode == "v2":
        await _serve_v2(request.command, stream, ctx, run_command)
    else:
        await _serve_raw(request, stream, ctx, run_command)


async def _serve_v2(command: str, stream: Stream, ctx, run_command) -> None:
    async def out(data: bytes) -> None:
        if data:
            await stream.write(v2_packet(ID_STDOUT, data))

    async def err(data: bytes) -> None:
        if data:
            await stream.write(v2_packet(ID_STDERR, data))

    collector = StdinCollector(stream)
    reader = asyncio.create_task(collector.run())
    try:
        stdin = await collector.stdin()
        try:
            status = await run_command(command, ctx, out, err, stdin)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as error:  # reported as adbd does when a service cannot start
            log.exception("shell command failed: %r", command)
            await err(f"error: {error}\n".encode())
            status = EXIT_SERVICE_ERROR
        await stream.write(v2_packet(ID_EXIT, bytes([status & 0xFF])))
    finally:
        reader.cancel()


async def _serve_raw(request: ShellRequest, stream: Stream, ctx, run_command) -> None:
    async def raw(data: bytes) -> None:
        if data:
            await stream.write(data)

    async def discard(_data: bytes) -> None:
        return None

    drain = asyncio.create_task(_drain_input(stream))
    try:
        # Legacy shell merges stderr into the output; exec: gives stdout only.
        await run_command(request.command, ctx, raw, raw if request.mode == "shell" else discard)
    finally:
        drain.cancel()
