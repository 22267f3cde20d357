"""ADB transport messages (the adb server <-> adbd wire format), as in AOSP ``adb.h``/``types.h``.

A message is a 24-byte header of six little-endian uint32 (command, arg0, arg1, data_length,
data_check, magic = command ^ 0xffffffff) followed by ``data_length`` payload bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

A_SYNC = 0x434E5953  # obsolete, never sent
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453

COMMAND_NAMES = {
    A_SYNC: "SYNC", A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN",
    A_OKAY: "OKAY", A_CLSE: "CLSE", A_WRTE: "WRTE", A_STLS: "STLS",
}

A_VERSION_MIN = 0x01000000
# From this version on, senders leave data_check at 0 and receivers never verify it.
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001

MAX_PAYLOAD_V1 = 4096  # CNXN and AUTH must fit in this
MAX_PAYLOAD = 1024 * 1024  # what current adbd advertises; the host takes min(ours, its own)

HEADER_SIZE = 24
_HEADER = struct.Struct("<6I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid ADB message; the link must be dropped."""


@dataclass
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")

    def __repr__(self) -> str:  # short, for logs: big payloads would flood them
        return f"{self.name}({self.arg0:#x}, {self.arg1:#x}, {len(self.data)} bytes)"


def data_check(data: bytes) -> int:
    """The legacy "checksum": a plain byte sum (only sent to peers older than SKIP_CHECKSUM)."""
    return sum(data) & 0xFFFFFFFF


def encode_header(message: Message, with_checksum: bool = False) -> bytes:
    check = data_check(message.data) if with_checksum else 0
    return _HEADER.pack(message.command, message.arg0, message.arg1, len(message.data), check,
                        message.command ^ 0xFFFFFFFF)


def encode(message: Message, with_checksum: bool = False) -> bytes:
    return encode_header(message, with_checksum) + message.data


@dataclass
class Header:
    command: int
    arg0: int
    arg1: int
    data_length: int
    data_check: int


def decode_header(raw: bytes, max_payload: int) -> Header:
    """Parse and validate a 24-byte header the way adb's ``check_header`` does."""
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"short header: {len(raw)} bytes")
    command, arg0, arg1, length, check, magic = _HEADER.unpack(raw)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#x} for command {command:#x}")
    if length > max_payload:
        raise ProtocolError(f"payload of {length} bytes exceeds max payload {max_payload}")
    return Header(command, arg0, arg1, length, check)


def device_banner(props: dict[str, str], features: list[str]) -> bytes:
    """The CNXN payload of a device: ``device::<key=value;...>features=<a,b,...>``.

    The host only reads ro.product.name/model/device and features (adb.cpp ``parse_banner``).
    """
    keys = ("ro.product.name", "ro.product.model", "ro.product.device")
    # ';' and ':' would break the host's parsing, so they must not appear in a value.
    parts = [f"{k}={props.get(k, '').replace(';', '_').replace(':', '_')}" for k in keys]
    parts.append("features=" + ",".join(features))
    banner = "device::" + ";".join(parts)
    data = banner.encode()
    if len(data) > MAX_PAYLOAD_V1:
        raise ValueError("device banner longer than MAX_PAYLOAD_V1")
    return data
