"""`--devices` selectors: what they say and which devices they mean. Pure: no adb here.

A selector is a comma list of terms, combined as a union:
  all            every device of every server
  SERIAL         one device by its adb serial (e.g. 127.0.0.1:5555, R58M123ABC)
  tag:NAME       devices tagged NAME in [lab.tags]
  model:NAME     ro.product.model, case-insensitive, spaces and underscores alike
  abi:NAME       ro.product.cpu.abi (the primary ABI)
  server:NAME    every device of the adb server named NAME in [lab.servers]
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import UserError

# Terms that name a property of devices; the rest (all, a serial) need no device query.
PROPERTY_KINDS = ("tag", "model", "abi", "server")
SELECTOR_HELP = "all, SERIAL, tag:NAME, model:NAME, abi:NAME or server:NAME, comma-separated"


@dataclass(frozen=True)
class SelectorTerm:
    kind: str   # "all", "serial" or one of PROPERTY_KINDS
    value: str = ""

    def __str__(self) -> str:
        return self.value if self.kind in ("all", "serial") else f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class DeviceFacts:
    """What a selector can match on, for one device of one server."""

    serial: str
    server_name: str
    server_address: str
    state: str
    model: str | None = None
    abi: str | None = None
    tags: tuple[str, ...] = ()

    def describe(self) -> str:
        tags = ",".join(self.tags) or "-"
        return (f"{self.serial} (server {self.server_name}, {self.state}, model "
                f"{self.model or '?'}, abi {self.abi or '?'}, tags {tags})")


def parse_selector(text: str | None) -> list[SelectorTerm]:
    """Terms of a selector in the order given, duplicates dropped."""
    text = (text or "").strip()
    if not text:
        raise UserError(f"--devices is empty: use {SELECTOR_HELP}")
    terms = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        kind, sep, value = raw.partition(":")
        if raw == "all":
            term = SelectorTerm("all", "all")
        elif sep and kind in PROPERTY_KINDS:
            if not value.strip():
                raise UserError(f"--devices {raw}: {kind}: needs a name, e.g. {kind}:NAME")
            term = SelectorTerm(kind, value.strip())
        elif sep and re.fullmatch(r"[a-z]+", kind) and not value.isdigit():
            # `tags:big` is a typo, not a serial; serials with a colon end in a port (host:5555).
            raise UserError(f"--devices {raw}: unknown selector {kind}:; use {SELECTOR_HELP}")
        else:
            term = SelectorTerm("serial", raw)
        if term not in terms:
            terms.append(term)
    if not terms:
        raise UserError(f"--devices {text!r}: no selector in it; use {SELECTOR_HELP}")
    return terms


def needs_device_properties(terms: list[SelectorTerm]) -> bool:
    return any(t.kind in PROPERTY_KINDS for t in terms)


def normalize_model(name: str) -> str:
    """`Pixel 7 Pro`, `pixel_7_pro` and `PIXEL  7 pro` are the same model."""
    return " ".join(name.replace("_", " ").lower().split())


def term_matches(term: SelectorTerm, device: DeviceFacts) -> bool:
    if term.kind == "all":
        return True
    if term.kind == "serial":
        return device.serial == term.value
    if term.kind == "tag":
        return term.value in device.tags
    if term.kind == "model":
        return device.model is not None and normalize_model(device.model) == normalize_model(term.value)
    if term.kind == "abi":
        return device.abi is not None and device.abi.lower() == term.value.lower()
    if term.kind == "server":
        return device.server_name == term.value
    raise ValueError(f"unknown selector kind {term.kind}")


def resolve_selector(terms: list[SelectorTerm], devices: list[DeviceFacts]
                     ) -> tuple[list[DeviceFacts], list[str]]:
    """(the devices the terms mean, in term order without repeats; serials no server lists).

    A property term that matches nothing is a UserError listing what exists: it is a typo or
    a missing tag, and a run on fewer devices than meant must not pass silently. An unknown
    serial is returned instead, so the run records that device as failed.
    """
    chosen: list[DeviceFacts] = []
    missing_serials: list[str] = []
    for term in terms:
        found = [d for d in devices if term_matches(term, d)]
        if not found:
            if term.kind == "serial":
                missing_serials.append(term.value)
                continue
            raise UserError(f"--devices {term}: matches no device; {describe_devices(devices)}")
        chosen.extend(d for d in found if d not in chosen)
    return chosen, missing_serials


def describe_devices(devices: list[DeviceFacts]) -> str:
    if not devices:
        return "no adb server lists any device"
    return "devices: " + "; ".join(d.describe() for d in devices)
