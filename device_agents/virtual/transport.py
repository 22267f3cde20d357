"""The virtual device's ADB transport: a TCP server that speaks adbd's side of the protocol.

One ``Link`` per TCP connection from an adb server: the CNXN handshake, then AUTH as adbd does on
a phone with ``ro.adb.secure=1`` (a token to sign; only the device's trusted keys are accepted, a
host offering any other key stays ``unauthorized``), then many concurrent streams
(OPEN/OKAY/WRTE/CLSE). Each stream runs one service task; this module knows
nothing about services, it asks ``ServiceOpener`` for a coroutine per OPEN.

Flow control is adb's classic one (no delayed_ack): at most one unacknowledged WRTE per stream in
each direction. We acknowledge a host WRTE when the service takes the data, so a slow consumer
(e.g. a file write) slows the host down instead of filling memory.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Awaitable, Callable, Optional

from device_agents.virtual.adb_auth import (
    ADB_AUTH_RSAPUBLICKEY, ADB_AUTH_SIGNATURE, ADB_AUTH_TOKEN, TOKEN_SIZE, TrustedKeys,
)
from device_agents.virtual.faults import FaultWatcher
from device_agents.virtual.protocol import (
    A_AUTH, A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_VERSION_SKIP_CHECKSUM, A_WRTE, HEADER_SIZE,
    MAX_PAYLOAD, MAX_PAYLOAD_V1, Message, ProtocolError, decode_header, encode_header,
)

log = logging.getLogger("bench.virtual.transport")

# adbd slows a host down after this many failed signatures on one connection (adb.cpp).
FAILED_AUTH_ATTEMPTS_BEFORE_DELAY = 256
FAILED_AUTH_DELAY_S = 1.0


class StreamClosed(ConnectionError):
    """The host closed the stream (or the link died) while a service was using it."""


class Stream:
    """One ADB stream as a service sees it: read what the host writes, write back, close."""

    def __init__(self, link: "Link", local_id: int, remote_id: int, service: str):
        self.link = link
        self.local_id = local_id
        self.remote_id = remote_id
        self.service = service
        self.closed = False
        self._inbox: asyncio.Queue[Optional[bytes]] = asyncio.Queue()
        self._buffer = bytearray()
        self._offset = 0  # read position in _buffer: avoids re-copying on every small read
        self._can_send = asyncio.Event()
        self._can_send.set()  # our READY (OKAY) was sent; the first WRTE needs no ack
        self._write_lock = asyncio.Lock()  # stdout and stderr may be written from two tasks
        self.task: Optional[asyncio.Task] = None

    # -- host -> service -------------------------------------------------------------------
    async def _next_chunk(self) -> bytes:
        chunk = await self._inbox.get()
        if chunk is None:
            self._inbox.put_nowait(None)  # stay at EOF for later readers
            return b""
        self.link.send(Message(A_OKAY, self.local_id, self.remote_id))
        return chunk

    async def read_some(self) -> bytes:
        """Whatever the host sent next (buffered first); b"" once the host closed the stream."""
        if self._offset < len(self._buffer):
            out = bytes(self._buffer[self._offset:])
            self._buffer.clear()
            self._offset = 0
            return out
        return await self._next_chunk()

    async def read_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes of the host's byte stream, whatever the WRTE boundaries."""
        while len(self._buffer) - self._offset < size:
            chunk = await self._next_chunk()
            if not chunk:
                raise EOFError(f"stream closed with {len(self._buffer) - self._offset} of {size} bytes")
            if self._offset:
                del self._buffer[:self._offset]
                self._offset = 0
            self._buffer += chunk
        start = self._offset
        self._offset += size
        return bytes(self._buffer[start:self._offset])

    # -- service -> host -------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        """Send ``data`` in WRTEs of at most the negotiated payload, one unacknowledged at a time."""
        view = memoryview(data)
        async with self._write_lock:
            for start in range(0, len(view), self.link.max_payload):
                await self._can_send.wait()
                if self.closed:
                    raise StreamClosed(f"stream {self.service!r} closed by host")
                self._can_send.clear()
                self.link.send(Message(A_WRTE, self.local_id, self.remote_id,
                                       bytes(view[start:start + self.link.max_payload])))

    def close(self) -> None:
        """Service finished: tell the host (once)."""
        if not self.closed:
            self.closed = True
            self.link.send(Message(A_CLSE, self.local_id, self.remote_id))
            self.link.forget(self)

    # -- called by the link ----------------------------------------------------------------
    def _host_wrote(self, data: bytes) -> None:
        self._inbox.put_nowait(data)

    def _host_acked(self) -> None:
        self._can_send.set()

    def _host_closed(self) -> None:
        """Host CLSE or link lost: no reply, wake readers/writers, cancel the service."""
        self.closed = True
        self._inbox.put_nowait(None)
        self._can_send.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # kills any running command (the shell cleans up on cancel)


# name -> coroutine running the service on the stream, or None when the service is unknown.
ServiceOpener = Callable[[str, Stream], Optional[Awaitable[None]]]


class Link:
    """One TCP connection from an adb server."""

    def __init__(self, server: "DeviceServer", reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.server = server
        self._reader = reader
        self._writer = writer
        self.version = A_VERSION
        self.max_payload = MAX_PAYLOAD_V1  # until the host's CNXN says more
        self.connected = False  # the host's CNXN arrived
        self.online = False     # ... and it authenticated: streams may be opened
        self._token = b""       # the AUTH token the host must sign next
        self._failed_auth_attempts = 0
        self.alive = True
        # Bytes of sync SEND data received on this connection (for the drop_after_push_bytes fault).
        self.pushed_bytes = 0
        self._streams: dict[int, Stream] = {}
        self._next_id = 1

    def send(self, message: Message) -> None:
        if not self.alive:
            return
        with_checksum = message.command == A_CNXN or self.version < A_VERSION_SKIP_CHECKSUM
        # One writelines call per message: no await in between, so concurrent streams never
        # interleave inside a message, and the 1 MiB payload is not copied into the header.
        self._writer.writelines([encode_header(message, with_checksum), message.data])

    def forget(self, stream: Stream) -> None:
        self._streams.pop(stream.local_id, None)

    def drop(self, fault_name: Optional[str] = None) -> None:
        """Cut the TCP connection now (abruptly, like a pulled cable)."""
        if fault_name:
            self.server.take_offline(fault_name)
        if not self.alive:
            return
        self.alive = False
        self._writer.transport.abort()
        self._close_streams()

    def _close_streams(self) -> None:
        for stream in list(self._streams.values()):
            stream._host_closed()
        self._streams.clear()

    async def run(self) -> None:
        try:
            while self.alive:
                raw = await self._reader.readexactly(HEADER_SIZE)
                # Accept up to MAX_PAYLOAD in: the host may legitimately use it right after CNXN.
                header = decode_header(raw, MAX_PAYLOAD)
                data = await self._reader.readexactly(header.data_length) if header.data_length else b""
                self._handle(Message(header.command, header.arg0, header.arg1, data))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except ProtocolError as error:
            log.warning("dropping link: %s", error)
        finally:
            self.alive = False
            self._close_streams()
            self._writer.close()

    def _handle(self, message: Message) -> None:
        if message.command == A_CNXN:
            self._on_connect(message)
        elif not self.connected:
            return  # nothing but CNXN is accepted before the handshake
        elif message.command == A_AUTH:
            self._on_auth(message)
        elif not self.online:
            return  # as adbd: no stream before the host has authenticated
        elif message.command == A_OPEN:
            self._on_open(message)
        elif message.command == A_WRTE:
            stream = self._streams.get(message.arg1)
            if stream is not None and stream.remote_id == message.arg0:
                stream._host_wrote(message.data)
        elif message.command == A_OKAY:
            stream = self._streams.get(message.arg1)
            if stream is not None and stream.remote_id == message.arg0:
                stream._host_acked()
        elif message.command == A_CLSE:
            stream = self._streams.pop(message.arg1, None)
            if stream is not None:
                stream._host_closed()
        # STLS/SYNC from a host are ignored: this device never asks for them.

    def _on_connect(self, message: Message) -> None:
        if self.connected:
            self._close_streams()  # the host restarted its side of the session
        self.version = min(message.arg0, A_VERSION)
        self.max_payload = min(message.arg1, MAX_PAYLOAD)
        self.connected = True
        self.online = False  # adbd's handle_new_connection: offline until authenticated again
        self._send_auth_request()

    def _send_auth_request(self) -> None:
        """A fresh random token for the host to sign (adbd's send_auth_request)."""
        self._token = os.urandom(TOKEN_SIZE)
        self.send(Message(A_AUTH, ADB_AUTH_TOKEN, 0, self._token))

    def _on_auth(self, message: Message) -> None:
        if self.online:
            return  # already authenticated: a stray AUTH changes nothing
        if message.arg0 == ADB_AUTH_SIGNATURE:
            if not self._token:
                return  # a fresh token is on its way (slowed down): nothing to check yet
            key = self.server.trusted_keys.verify(self._token, message.data)
            if key is not None:
                log.info("host authenticated with key %s", key.comment or "(no comment)")
                self._failed_auth_attempts = 0
                self.online = True
                self.send(Message(A_CNXN, self.version, self.max_payload, self.server.banner))
                return
            self._failed_auth_attempts += 1
            if self._failed_auth_attempts > FAILED_AUTH_ATTEMPTS_BEFORE_DELAY:
                # One token a second from now on, as adbd's sleep does; the signatures sent
                # meanwhile are dropped unchecked, so a flood costs neither CPU nor memory.
                self._token = b""
                asyncio.get_running_loop().call_later(FAILED_AUTH_DELAY_S, self._send_auth_request)
            else:
                self._send_auth_request()  # the host tries its next key
        elif message.arg0 == ADB_AUTH_RSAPUBLICKEY:
            # A phone would now ask its user; this device has nobody to ask, so the key is only
            # logged and the host stays unauthorized (`bench lab up --authorize-key` trusts it).
            comment = message.data.rstrip(b"\0").partition(b" ")[2].decode(errors="replace")
            log.warning("unauthorized host key offered (%s): not trusted", comment or "no comment")
        else:
            self.drop()  # adbd sets the transport offline on an unknown AUTH type

    def _on_open(self, message: Message) -> None:
        host_id = message.arg0
        if host_id == 0:
            return
        service = message.data.rstrip(b"\0").decode("utf-8", "replace")
        # arg1 != 0 means the host wants delayed_ack windowing, which we do not offer.
        runner = None
        stream = Stream(self, self._next_id, host_id, service)
        if message.arg1 == 0:
            runner = self.server.open_service(service, stream)
        if runner is None:
            log.info("refusing service %r", service)
            self.send(Message(A_CLSE, 0, host_id))
            return
        self._next_id += 1
        self._streams[stream.local_id] = stream
        self.send(Message(A_OKAY, stream.local_id, host_id))
        stream.task = asyncio.create_task(self._run_service(stream, runner))

    async def _run_service(self, stream: Stream, runner: Awaitable[None]) -> None:
        try:
            await runner
        except (StreamClosed, EOFError, asyncio.CancelledError):
            pass
        except Exception:  # a service bug must not take the whole device down
            log.exception("service %r failed", stream.service)
        finally:
            stream.close()


class DeviceServer:
    """Accepts adb server connections for one device; remembers whether a fault took it offline."""

    def __init__(self, banner: bytes, open_service: ServiceOpener, faults: FaultWatcher,
                 trusted_keys: TrustedKeys):
        self.banner = banner
        self.trusted_keys = trusted_keys
        self.open_service = open_service
        self.faults = faults
        self.links: set[Link] = set()
        self._offline: Optional[tuple[str, float]] = None  # (fault name, monotonic time of drop)
        self._server: Optional[asyncio.base_events.Server] = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful when ``port`` is 0)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.drop()
        if self._server is not None:
            await self._server.wait_closed()

    # -- offline state ---------------------------------------------------------------------
    def take_offline(self, fault_name: str) -> None:
        """A drop fault fired: cut every link, and refuse connections for a while."""
        log.info("fault %s: going offline", fault_name)
        self._offline = (fault_name, time.monotonic())
        for link in list(self.links):
            link.drop()

    def is_offline(self) -> bool:
        if self._offline is None:
            return False
        fault_name, since = self._offline
        faults = self.faults.current()
        still_on = getattr(faults, fault_name) not in (None, False)
        expired = faults.offline_for_s is not None and time.monotonic() - since >= faults.offline_for_s
        if not still_on or expired:
            self._offline = None
            return False
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_offline():
            writer.transport.abort()  # as an unplugged phone: the connection goes nowhere
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Small replies (OKAY, a STAT) must not wait for Nagle's algorithm: adbd does the same.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(self, reader, writer)
        self.links.add(link)
        try:
            await link.run()
        except asyncio.CancelledError:
            # Shutdown. Swallowed because asyncio's stream callback (3.11) logs a traceback
            # for a cancelled connection handler.
            pass
        finally:
            self.links.discard(link)
