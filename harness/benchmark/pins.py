"""Fetch a prebuilt benchmark_model and pin it in bench.toml (`bench binaries fetch`).

The pin is the `[lab.binaries.<abi>]` table: path, sha256 and where the file came from. Only
that table of the file is rewritten; every other line (comments included) stays as it was, and
the new file must load as a bench config before it replaces the old one (written whole, then
renamed into place).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from harness.benchmark.fetch import (DEFAULT_BASE_URLS, DEFAULT_VERSION, FetchedBinary,
                                     FetchError, binary_url, download, store_in_cache)
from harness.benchmark.flavours import Flavour
from harness.config import DEFAULT_CONFIG_FILE, KNOWN_ABIS, LabBinary, config_from_tables
from harness.errors import UserError
from harness.paths import binaries_dir
from harness.results.schema import utc_now


class PinOutcome(str, Enum):
    PINNED = "pinned"          # no pin for the ABI before
    UNCHANGED = "unchanged"    # upstream still serves the pinned bytes
    RESTORED = "restored"      # the pinned file was missing here and came back, same bytes
    REPINNED = "re-pinned"     # --repin replaced the pin with other bytes

    def __str__(self) -> str:
        return self.value


@dataclass
class FetchResult:
    binary: FetchedBinary
    outcome: PinOutcome
    config_path: Path
    previous_sha256: str | None = None


def fetch_and_pin(abi: str, flavour: Flavour, *, version: str = DEFAULT_VERSION,
                  base_url: str | None = None, flex: bool = False,
                  config_path: Path | None = None, repin: bool = False,
                  progress: Callable[[int, int | None], None] | None = None,
                  cache_root: Path | None = None) -> FetchResult:
    """Download the prebuilt for `abi`, check it, cache it and pin it in the config.

    A pin whose sha256 differs from what the URL serves now is refused (FetchError naming both
    hashes) unless `repin`; the download is then deleted, so nothing unpinned is ever used.
    """
    if abi not in KNOWN_ABIS:
        raise UserError(f"--abi {abi}: unknown ABI; use one of {', '.join(KNOWN_ABIS)}")
    config_path = Path(config_path or DEFAULT_CONFIG_FILE)
    text = _read_config_text(config_path)
    existing = _current_pin(text, config_path, abi)
    url = binary_url(abi, flavour, version, base_url, flex)
    pinned_file_present = existing is not None and Path(existing.path).is_file()
    root = cache_root or binaries_dir()
    temp, sha256, size, headers = download(url, root, abi, progress)
    try:
        if existing is not None and existing.sha256 and existing.sha256 != sha256 and not repin:
            raise FetchError(_changed_upstream_message(abi, existing, url, sha256, flavour,
                                                       version, base_url, flex, config_path))
        record = FetchedBinary(abi=abi, flavour=flavour.value, version=version, url=url,
                               sha256=sha256, size_bytes=size, fetched_at=utc_now(), path="",
                               flex=flex, etag=headers.get("etag"),
                               last_modified=headers.get("last_modified"))
        record = store_in_cache(temp, record, root)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if existing is not None and existing.sha256 == sha256:
        outcome = PinOutcome.UNCHANGED if pinned_file_present else PinOutcome.RESTORED
        if existing.fetched_at:
            record.fetched_at = existing.fetched_at  # the pin keeps the date it was made
    else:
        outcome = PinOutcome.REPINNED if existing is not None else PinOutcome.PINNED
    write_pin(config_path, abi, record.pin_fields(), text)
    return FetchResult(record, outcome, config_path,
                       existing.sha256 if existing is not None else None)


def _changed_upstream_message(abi, existing: LabBinary, url, sha256, flavour, version,
                              base_url, flex, config_path: Path) -> str:
    again = [f"bench binaries fetch --abi {abi} --flavour {flavour.value}"]
    if version != DEFAULT_VERSION:
        again.append(f"--version {version}")
    if base_url:
        again.append(f"--base-url {base_url}")
    if flex:
        again.append("--flex")
    if str(config_path) != DEFAULT_CONFIG_FILE:
        again.append(f"--config {config_path}")
    source = "changed upstream" if existing.url in (None, url) else f"differs from {existing.url}"
    return (f"[lab.binaries.{abi}] in {config_path} pins sha256 {existing.sha256}"
            f"{f' (fetched {existing.fetched_at})' if existing.fetched_at else ''}, but {url} now "
            f"serves sha256 {sha256} ({source}); nothing changed. To measure with the new binary "
            f"from now on: {' '.join(again)} --repin (results before and after then come from "
            "different tools)")


# -- the config file ----------------------------------------------------------------------------
def _read_config_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: cannot read it ({exc}); give a readable UTF-8 TOML "
                        "file") from None


def _load(text: str, path: Path):
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({' '.join(str(exc).splitlines())}); fix it "
                        "before pinning a binary in it") from None
    return config_from_tables(data, str(path))


def _current_pin(text: str, path: Path, abi: str) -> LabBinary | None:
    return _load(text, path).lab.binaries.get(abi) if text.strip() else None


def _header_re(abi: str) -> re.Pattern:
    return re.compile(rf"^\s*\[\s*lab\s*\.\s*binaries\s*\.\s*(?:\"{re.escape(abi)}\"|"
                      rf"'{re.escape(abi)}'|{re.escape(abi)})\s*\]\s*(?:#.*)?$")


_ANY_HEADER = re.compile(r"^\s*\[")


def write_pin(path: Path, abi: str, fields: dict, text: str | None = None) -> None:
    """Put `[lab.binaries.<abi>]` = `fields` into the TOML file at `path` (made if absent)."""
    text = _read_config_text(path) if text is None else text
    block = [f"[lab.binaries.{abi}]\n"] + [f"{key} = {_toml_value(value)}\n"
                                            for key, value in fields.items() if value is not None]
    lines = text.splitlines(keepends=True)
    header = _header_re(abi)
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None and text.strip() and _current_pin(text, path, abi) is not None:
        raise UserError(f"{path}: [lab.binaries.{abi}] is set in a form bench cannot rewrite "
                        f"(an inline table?); make it a [lab.binaries.{abi}] table, then fetch "
                        "again")
    if start is None:
        prefix = "".join(lines)
        if prefix and not prefix.endswith("\n"):
            prefix += "\n"
        new_text = prefix + ("\n" if prefix.strip() else "") + "".join(block)
    else:
        end = next((i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])),
                   len(lines))
        tail = lines[end:]
        new_text = "".join(lines[:start] + block + (["\n"] if tail else []) + tail)
    config = _load(new_text, path)  # what is written must load, and hold the pin
    pinned = config.lab.binaries.get(abi)
    if pinned is None or pinned.sha256 != fields.get("sha256"):
        raise UserError(f"{path}: [lab.binaries.{abi}] is set in a form bench cannot rewrite "
                        f"(an inline table?); make it a [lab.binaries.{abi}] table, then fetch "
                        "again")
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(new_text, encoding="utf-8")
    os.replace(staged, path)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are TOML's too


def pinned_binary_missing_hint(abi: str, binary: LabBinary) -> str:
    """How to get a pinned binary back on a host that lacks it: the fetch that gives the same
    URL (flavour, version, Flex build and mirror worked out from the pinned URL)."""
    if binary.url and binary.flavour in (f.value for f in Flavour):
        words = [f"bench binaries fetch --abi {abi} --flavour {binary.flavour}"]
        version = binary.version or DEFAULT_VERSION
        if version != DEFAULT_VERSION:
            words.append(f"--version {version}")
        flex = binary.url.endswith("_plus_flex")
        if flex:
            words.append("--flex")
        default = binary_url(abi, Flavour(binary.flavour), version, None, flex)
        if binary.url != default:
            suffix = default[len(DEFAULT_BASE_URLS[Flavour(binary.flavour)]):]
            if binary.url.endswith(suffix):
                words.append(f"--base-url {binary.url[:-len(suffix)]}")
        return f"fetch it again with `{' '.join(words)}` (checked against the pinned sha256)"
    return f"put the file back, or pin another with `bench binaries fetch --abi {abi}`"
