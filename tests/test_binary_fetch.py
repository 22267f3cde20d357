"""`bench binaries fetch`: download, check, cache and pin, against a real HTTP server on
127.0.0.1 that lays files out as Google's storages do (no internet here).

The served files are ELF headers with filler, not real tools: what is tested is the transport
and the pinning (whole, checked, content-addressed, refused when upstream changed), which is
the same for any bytes.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
import tomllib
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.benchmark.binaries import binary_for_abi, no_binary_message
from harness.benchmark.fetch import FetchError, binary_url, cached_binaries
from harness.benchmark.flavours import Flavour
from harness.benchmark.pins import PinOutcome, fetch_and_pin
from harness.config import load_config
from harness.errors import UserError
from tests.virtual_lab_fixtures import bench_cli


def elf(machine: int, elf_class: int = 2, body: bytes = b"") -> bytes:
    """An ELF header (e_ident + e_type + e_machine) followed by `body`."""
    ident = b"\x7fELF" + bytes([elf_class, 1, 1, 0]) + bytes(8)
    return ident + (2).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44) + body


ARM64_A = elf(183, body=os.urandom(300_000))
ARM64_B = elf(183, body=os.urandom(300_000))


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + hashlib.md5(body).hexdigest() + '"')
        self.end_headers()
        if self.path in self.truncate:  # the connection drops half-way
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@contextmanager
def storage_server():
    handler = type("Handler", (_Handler,), {"files": {}, "truncate": set(), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


NIGHTLY = "/nightly"
TFLITE_FILE = f"{NIGHTLY}/latest/android_aarch64_benchmark_model"


@pytest.fixture
def storage():
    with storage_server() as served:
        yield served


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "binaries"


def test_urls_follow_the_storages_layouts():
    assert binary_url("arm64-v8a", Flavour.TFLITE) == (
        "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
        "tools/nightly/latest/android_aarch64_benchmark_model")
    assert binary_url("arm64-v8a", Flavour.TFLITE, flex=True).endswith(
        "/latest/android_aarch64_benchmark_model_plus_flex")
    assert binary_url("armeabi-v7a", Flavour.TFLITE).endswith("/latest/android_arm_benchmark_model")
    assert binary_url("arm64-v8a", Flavour.LITERT, "2.2.0") == (
        "https://storage.googleapis.com/litert/binaries/2.2.0/android_arm64/benchmark_model")
    assert binary_url("arm64-v8a", Flavour.LITERT, "2.2.0", "http://mirror:8080/lr/") == (
        "http://mirror:8080/lr/2.2.0/android_arm64/benchmark_model")
    with pytest.raises(UserError, match="arm64-v8a only"):
        binary_url("x86", Flavour.LITERT)
    with pytest.raises(UserError, match="--version"):
        binary_url("arm64-v8a", Flavour.LITERT, "../etc")
    with pytest.raises(UserError, match="--flex"):
        binary_url("arm64-v8a", Flavour.LITERT, flex=True)


def test_fetch_pins_then_refuses_a_changed_latest_until_repinned(storage, tmp_path, cache):
    base, handler = storage
    handler.files[TFLITE_FILE] = ARM64_A
    config = tmp_path / "bench.toml"
    config.write_text('# the lab\n[run]\ntrials = 3  # nightly\n')
    seen = []

    first = fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                          config_path=config, cache_root=cache,
                          progress=lambda done, total: seen.append((done, total)))
    sha_a = hashlib.sha256(ARM64_A).hexdigest()
    assert first.outcome is PinOutcome.PINNED
    assert first.binary.sha256 == sha_a and first.binary.size_bytes == len(ARM64_A)
    assert first.binary.url == base + TFLITE_FILE
    assert Path(first.binary.path) == cache / sha_a / "benchmark_model"
    assert Path(first.binary.path).read_bytes() == ARM64_A
    assert os.access(first.binary.path, os.X_OK)
    assert seen[-1] == (len(ARM64_A), len(ARM64_A))  # streamed with progress
    text = config.read_text()
    assert text.startswith("# the lab\n[run]\ntrials = 3  # nightly\n")  # the rest untouched
    pin = tomllib.loads(text)["lab"]["binaries"]["arm64-v8a"]
    assert pin["sha256"] == sha_a and pin["url"] == base + TFLITE_FILE
    assert pin["flavour"] == "tflite" and pin["version"] == "latest"
    assert pin["size_bytes"] == len(ARM64_A) and pin["fetched_at"]
    loaded = load_config(config)
    assert binary_for_abi("arm64-v8a", loaded.binaries, loaded.lab.pinned_sha256()) == \
        Path(first.binary.path)
    assert [b.sha256 for b in cached_binaries(cache)] == [sha_a]

    again = fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                          config_path=config, cache_root=cache)
    assert again.outcome is PinOutcome.UNCHANGED
    assert config.read_text() == text  # same pin, same date

    handler.files[TFLITE_FILE] = ARM64_B  # "latest" moved on upstream
    sha_b = hashlib.sha256(ARM64_B).hexdigest()
    with pytest.raises(FetchError) as refused:
        fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                      config_path=config, cache_root=cache)
    message = str(refused.value)
    assert sha_a in message and sha_b in message and "--repin" in message
    assert "changed upstream" in message and "\n" not in message
    assert config.read_text() == text
    assert sorted(p.name for p in cache.iterdir()) == [sha_a]  # the new bytes were not kept

    repinned = fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                             config_path=config, cache_root=cache, repin=True)
    assert repinned.outcome is PinOutcome.REPINNED and repinned.previous_sha256 == sha_a
    assert load_config(config).lab.pinned_sha256() == {"arm64-v8a": sha_b}
    assert config.read_text().startswith("# the lab\n[run]\ntrials = 3  # nightly\n")
    assert config.read_text().count("[lab.binaries.arm64-v8a]") == 1


def test_a_pinned_binary_gone_from_this_host_is_named_and_restored(storage, tmp_path, cache):
    base, handler = storage
    handler.files[TFLITE_FILE] = ARM64_A
    config = tmp_path / "bench.toml"
    pinned = fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                           config_path=config, cache_root=cache)
    Path(pinned.binary.path).unlink()  # a fresh lab host: the config came, the cache did not
    loaded = load_config(config)
    with pytest.raises(UserError, match=r"bench binaries fetch --abi arm64-v8a --flavour tflite"):
        binary_for_abi("arm64-v8a", loaded.binaries, loaded.lab.pinned_sha256(),
                       lab_binaries=loaded.lab.binaries)
    restored = fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                             config_path=config, cache_root=cache)
    assert restored.outcome is PinOutcome.RESTORED
    assert Path(restored.binary.path).read_bytes() == ARM64_A


@pytest.mark.parametrize("served, problem", [
    ("truncated", "cut off"),
    ("html", "not an ELF file"),
    ("x86_64", "an ELF for x86_64, not arm64-v8a"),
    ("missing", "HTTP 404"),
])
def test_partial_or_corrupt_downloads_are_never_used(storage, tmp_path, cache, served, problem):
    base, handler = storage
    if served == "truncated":
        handler.files[TFLITE_FILE] = ARM64_A
        handler.truncate.add(TFLITE_FILE)
    elif served == "html":
        handler.files[TFLITE_FILE] = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    elif served == "x86_64":
        handler.files[TFLITE_FILE] = elf(62, body=b"\0" * 1000)
    config = tmp_path / "bench.toml"
    with pytest.raises(FetchError, match=problem) as failed:
        fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                      config_path=config, cache_root=cache)
    assert "\n" not in str(failed.value)
    assert not config.exists()  # nothing pinned
    assert not cache.exists() or list(cache.iterdir()) == []  # no partial file left


def test_litert_flavour_and_its_version(storage, tmp_path, cache):
    base, handler = storage
    handler.files["/litert/2.2.0/android_arm64/benchmark_model"] = ARM64_B
    config = tmp_path / "bench.toml"
    got = fetch_and_pin("arm64-v8a", Flavour.LITERT, version="2.2.0", base_url=base + "/litert",
                        config_path=config, cache_root=cache)
    pin = load_config(config).lab.binaries["arm64-v8a"]
    assert (pin.flavour, pin.version, pin.sha256) == ("litert", "2.2.0", got.binary.sha256)
    assert handler.requests == ["/litert/2.2.0/android_arm64/benchmark_model"]


def test_a_config_that_already_names_another_binary_is_left_alone(storage, tmp_path, cache):
    base, handler = storage
    handler.files[TFLITE_FILE] = ARM64_A
    config = tmp_path / "bench.toml"
    own = tmp_path / "my_benchmark_model"
    own.write_bytes(ARM64_B)
    before = f'[binaries]\narm64-v8a = "{own}"\n'
    config.write_text(before)
    with pytest.raises(UserError, match="given twice"):
        fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY,
                      config_path=config, cache_root=cache)
    assert config.read_text() == before


def test_the_cli_says_one_line_and_exits_non_zero(storage, tmp_path, monkeypatch, capsys):
    base, handler = storage
    monkeypatch.setenv("BENCH_BINARIES_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    handler.files[TFLITE_FILE] = ARM64_A

    def bench(*args):
        code, out, err = bench_cli(monkeypatch, capsys, *args)
        return code, SimpleNamespace(out=out, err=err)

    code, out = bench("binaries", "fetch", "--base-url", base + NIGHTLY)
    assert code == 0, out.err
    assert "pinned: [lab.binaries.arm64-v8a] in bench.toml" in out.out
    assert hashlib.sha256(ARM64_A).hexdigest() in out.out
    handler.files[TFLITE_FILE] = ARM64_B
    code, out = bench("binaries", "fetch", "--base-url", base + NIGHTLY)
    assert code == 1
    assert len(out.err.strip().splitlines()) == 1 and "--repin" in out.err
    code, out = bench("binaries", "fetch", "--abi", "x86", "--flavour", "litert")
    assert code == 2 and "arm64-v8a only" in out.err
    code, out = bench("binaries", "list")
    assert "arm64-v8a: tflite latest" in out.out and "[ok]" in out.out


def test_a_device_without_a_binary_is_told_the_fetch_command():
    message = no_binary_message("arm64-v8a")
    assert "bench binaries fetch --abi arm64-v8a" in message and "--binary arm64-v8a=PATH" in message


def test_the_hint_for_a_missing_pin_refetches_the_same_url(storage, tmp_path, cache):
    from harness.benchmark.pins import pinned_binary_missing_hint

    base, handler = storage
    handler.files[f"{NIGHTLY}/41/20200921-215507/android_aarch64_benchmark_model_plus_flex"] = ARM64_A
    config = tmp_path / "bench.toml"
    got = fetch_and_pin("arm64-v8a", Flavour.TFLITE, version="41/20200921-215507", flex=True,
                        base_url=base + NIGHTLY, config_path=config, cache_root=cache)
    pin = load_config(config).lab.binaries["arm64-v8a"]
    hint = pinned_binary_missing_hint("arm64-v8a", pin)
    assert (f"bench binaries fetch --abi arm64-v8a --flavour tflite --version 41/20200921-215507 "
            f"--flex --base-url {base}{NIGHTLY}`") in hint
    assert got.binary.url == pin.url


def test_quoted_and_inline_pins(storage, tmp_path, cache):
    base, handler = storage
    handler.files[TFLITE_FILE] = ARM64_A
    sha = hashlib.sha256(ARM64_A).hexdigest()
    quoted = tmp_path / "quoted.toml"
    quoted.write_text(f"[lab.binaries.'arm64-v8a']\npath = \"/old\"\nsha256 = \"{sha}\"\n")
    fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY, config_path=quoted,
                  cache_root=cache)
    assert quoted.read_text().count("[lab.binaries.") == 1  # the quoted table was rewritten
    assert load_config(quoted).lab.binaries["arm64-v8a"].path != "/old"
    inline = tmp_path / "inline.toml"
    before = f'[lab.binaries]\narm64-v8a = {{ path = "/old", sha256 = "{sha}" }}\n'
    inline.write_text(before)
    with pytest.raises(UserError, match="inline table"):
        fetch_and_pin("arm64-v8a", Flavour.TFLITE, base_url=base + NIGHTLY, config_path=inline,
                      cache_root=cache)
    assert inline.read_text() == before
    with pytest.raises(UserError, match="http"):
        binary_url("arm64-v8a", Flavour.TFLITE, base_url="file:///srv/mirror")
