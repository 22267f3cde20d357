"""The three streams a shell command sees, as async byte writers (so output streams as it comes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

Writer = Callable[[bytes], Awaitable[None]]

SHELL_NAME = "/system/bin/sh"


@dataclass
class Streams:
    stdin: bytes
    out: Writer
    err: Writer

    async def say(self, text: str) -> None:
        await self.out(text.encode())

    async def complain(self, text: str) -> None:
        """Writes one line to stderr (adds the newline)."""
        await self.err((text + "\n").encode())


async def discard(_data: bytes) -> None:
    return None


class Capture:
    """A writer that keeps what it is given (pipes and $(...) use it)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def __call__(self, data: bytes) -> None:
        self.chunks.append(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)
