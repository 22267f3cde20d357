"""A virtual device never gives its host away (issue 9, point 1), tested with the real adb.

- ADB authentication as a phone with ro.adb.secure=1: the device trusts only the keys it was
  given; an adb server whose HOME holds a fresh key stays `unauthorized`.
- Execution: only the benchmark_model bench ships (known by content hash) becomes a host
  process, and only from bench's own code; a pushed script or ELF answers as Android does.
- A bounded fuzz of malformed ADB packets leaves the device answering `adb shell echo ok`.
"""
from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_agents.virtual.adb_auth import (ADB_AUTH_RSAPUBLICKEY, ADB_AUTH_SIGNATURE,
                                            ADB_AUTH_TOKEN, TRUSTED_KEYS_FILE, KeyFormatError,
                                            encode_public_key, parse_public_key)
from device_agents.virtual.protocol import (A_AUTH, A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_STLS,
                                            A_SYNC, A_VERSION, A_WRTE, Message, encode)
from tests.adb_test_keys import new_adb_test_key
from tests.virtual_lab_fixtures import (SHIPPED_BENCHMARK_MODEL, RawHost, adb_server,
                                        host_processes_with_root, virtual_device)

REMOTE_TMP = "/data/local/tmp"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    """One device and the adb server it trusts (the lab's arrangement)."""
    base = tmp_path_factory.mktemp("trust")
    with adb_server(base / "owner-home") as adb, virtual_device(base / "dev", serial="vd-trust") as device:
        serial = adb.connect(device)
        yield adb, device, serial
    assert "Traceback" not in device.log_tail(200_000), device.log_tail()


def shell(adb, serial: str, command: str) -> subprocess.CompletedProcess:
    return adb.run("-s", serial, "shell", command)


# -- the key format, against the key the real adb writes ---------------------------------------
def test_adb_public_key_format_is_the_one_adb_writes(trusted):
    adb, _device, _serial = trusted
    line = adb.public_key_path.read_text().strip()
    key = parse_public_key(line)
    assert key.exponent == 65537 and key.modulus.bit_length() == 2048
    # Re-encoding from (n, e) gives adb's bytes exactly: n0inv and R^2 mod N are right.
    assert encode_public_key(key.modulus, key.exponent, key.comment) == line
    for bad in ("", "not-base64!!", "QUJD", line.split()[0][:-8] + "AAAAAAA=", ):
        with pytest.raises(KeyFormatError):
            parse_public_key(bad)


def test_signature_is_checked_against_the_token():
    key = new_adb_test_key()
    public = parse_public_key(key.public_line())
    token = os.urandom(20)
    assert public.verify(token, key.sign(token))
    assert not public.verify(os.urandom(20), key.sign(token))
    assert not public.verify(token, key.sign(token)[:-1] + b"\0")
    assert not parse_public_key(new_adb_test_key().public_line()).verify(token, key.sign(token))


# -- authentication with two real adb servers --------------------------------------------------
def test_adb_server_with_an_unknown_key_stays_unauthorized(trusted, tmp_path):
    adb, device, serial = trusted
    with adb_server(tmp_path / "stranger-home") as stranger:
        connect = stranger.run("connect", device.address)
        assert stranger.wait_for_state(device.address, "unauthorized", timeout_s=30), (
            connect.stdout, connect.stderr, stranger.states())
        refused = shell(stranger, device.address, "echo pwned")
        assert refused.returncode != 0
        assert b"pwned" not in refused.stdout
        assert b"unauthorized" in refused.stderr + refused.stdout
        # The owner's server still drives the device.
        assert shell(adb, serial, "echo ok").stdout.strip() == b"ok"
        # Once the owner trusts the stranger's key (as `lab up --authorize-key` does), it works.
        stranger.authorize_on(device)
        stranger.run("disconnect", device.address)
        assert stranger.run("connect", device.address).returncode == 0
        assert stranger.wait_for_state(device.address, "device", timeout_s=30), stranger.states()
        assert shell(stranger, device.address, "echo ok").stdout.strip() == b"ok"
    # Back to the owner alone for the other tests.
    keys_file = device.state_dir / TRUSTED_KEYS_FILE
    keys_file.write_text(adb.public_key_path.read_text())


def test_no_stream_opens_before_authentication(trusted):
    _adb, device, _serial = trusted
    stranger = new_adb_test_key()
    with RawHost(device.port) as host:
        challenge = host.connect()
        assert (challenge.command, challenge.arg0, len(challenge.data)) == (A_AUTH, ADB_AUTH_TOKEN, 20)
        # An OPEN before authenticating gets nothing at all: not READY, not CLSE.
        host.send(Message(A_OPEN, 1, 0, b"shell:echo pwned\0"))
        # A signature by an untrusted key: a fresh token, and still no stream.
        host.send(Message(A_AUTH, ADB_AUTH_SIGNATURE, 0, stranger.sign(challenge.data)))
        again = host.receive()
        assert (again.command, again.arg0) == (A_AUTH, ADB_AUTH_TOKEN)
        assert again.data != challenge.data
        host.send(Message(A_AUTH, ADB_AUTH_RSAPUBLICKEY, 0, stranger.public_line().encode() + b"\0"))
        host.send(Message(A_OPEN, 2, 0, b"shell:echo pwned\0"))
        assert not host.has_pending(1.0)  # the device waits for a user who never says yes


def test_lab_up_trusts_the_users_key_and_authorize_key(tmp_path):
    from harness.targets.adb.session import list_device_states
    from harness.errors import UserError
    from harness.targets.adb.virtual_lab import lab_down, lab_up

    base = tmp_path / "lab-state"
    with adb_server(tmp_path / "colleague-home") as colleague:
        missing = tmp_path / "nope.pub"
        with pytest.raises(UserError, match="--authorize-key .*nope.pub: no such file"):
            lab_up(1, base=base, authorize_keys=[missing])
        assert not (base / "lab.json").exists()  # nothing was started
        lab = lab_up(1, base=base, authorize_keys=[colleague.public_key_path])
        try:
            assert dict(list_device_states(lab.server))[lab.devices[0].serial] == "device"
            address = lab.devices[0].serial
            assert colleague.run("connect", address).returncode == 0
            assert colleague.wait_for_state(address, "device", timeout_s=30), colleague.states()
            assert shell(colleague, address, "getprop ro.adb.secure").stdout.strip() == b"1"
        finally:
            lab_down(base)


def test_cli_lab_up_with_a_bad_key_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("this is not a key\n")
    env = dict(os.environ, BENCH_STATE_DIR=str(tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "harness", "lab", "up", "--virtual", "1",
                           "--authorize-key", str(bad)], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "not an adb public key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "lab.json").exists()


# -- execution -------------------------------------------------------------------------------
def _push_executable(adb, serial: str, local: Path, name: str) -> None:
    assert adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/{name}").returncode == 0
    assert shell(adb, serial, f"chmod 755 {REMOTE_TMP}/{name}").returncode == 0


def test_a_pushed_script_or_elf_never_becomes_a_host_process(trusted, tmp_path):
    adb, device, serial = trusted
    marker = tmp_path / "pwned-by-device"
    script = tmp_path / "attack.py"
    script.write_text(f"#!/usr/bin/env python3\nopen({str(marker)!r}, 'w').write('root')\n")
    _push_executable(adb, serial, script, "attack.py")
    for command in (f"{REMOTE_TMP}/attack.py", f"cd {REMOTE_TMP} && ./attack.py",
                    f"export PATH={REMOTE_TMP}:$PATH; attack.py"):
        result = shell(adb, serial, command)
        assert result.returncode == 127, (command, result)
        assert b"attack.py: No such file or directory" in result.stderr
    # A script named like the shipped tool is still just a script.
    _push_executable(adb, serial, script, "benchmark_model")
    result = shell(adb, serial, f"{REMOTE_TMP}/benchmark_model --help")
    assert result.returncode == 127 and b"No such file or directory" in result.stderr
    # ELF files: an arm64 one as a phone of another ABI answers; the host's own x86_64 ones are
    # refused too, since they would run outside the sandbox.
    arm64 = tmp_path / "arm64.elf"
    arm64.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HH", 2, 183) + b"\0" * 100)
    _push_executable(adb, serial, arm64, "arm64.elf")
    result = shell(adb, serial, f"{REMOTE_TMP}/arm64.elf")
    assert result.returncode == 126 and b"not executable: 64-bit ELF file" in result.stderr
    _push_executable(adb, serial, Path("/bin/true"), "host_true")
    result = shell(adb, serial, f"{REMOTE_TMP}/host_true")
    assert result.returncode == 126 and b"Exec format error" in result.stderr
    assert not marker.exists()
    assert host_processes_with_root(device.fs_root) == []


def test_the_shipped_tool_runs_bench_code_whatever_the_device_sets(trusted, tmp_path, tiny_model):
    adb, device, serial = trusted
    marker = tmp_path / "pwned-by-import"
    evil = tmp_path / "evil"
    for package in ("device_agents", "numpy", "ai_edge_litert"):  # shadows, if ever imported
        (evil / package).mkdir(parents=True)
        (evil / package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (evil / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    # Beside the tool (the folder Python would search first) and in a PYTHONPATH folder.
    assert adb.run("-s", serial, "push", str(evil), f"{REMOTE_TMP}/").returncode == 0
    for item in sorted(evil.iterdir()):
        assert adb.run("-s", serial, "push", str(item), f"{REMOTE_TMP}/").returncode == 0
    _push_executable(adb, serial, SHIPPED_BENCHMARK_MODEL, "benchmark_model")
    assert adb.run("-s", serial, "push", str(tiny_model), f"{REMOTE_TMP}/tiny.tflite").returncode == 0
    result = shell(adb, serial, f"cd {REMOTE_TMP} && PYTHONPATH={REMOTE_TMP}/evil "
                   f"PYTHONSTARTUP=sitecustomize.py LD_PRELOAD={REMOTE_TMP}/evil.so "
                   f"./benchmark_model --graph=tiny.tflite --num_runs=3 --min_secs=0.01 "
                   "--warmup_runs=1 --warmup_min_secs=0")
    assert result.returncode == 0, result.stderr
    assert b"Inference timings in us" in result.stdout
    assert not marker.exists()
    # Its file arguments stay inside the device too, relative or absolute.
    outside = f"--graph=../../../..{tiny_model}"
    result = shell(adb, serial, f"cd {REMOTE_TMP} && ./benchmark_model {outside}")
    assert result.returncode == 1 and b"Could not open" in result.stderr


# -- fuzz ------------------------------------------------------------------------------------
FUZZ_CONNECTIONS = 150
FUZZ_BUDGET_S = 20.0  # stop sending after this long, whatever the count (bounded in time)


def _fuzz_payload(rng: random.Random) -> bytes:
    commands = [A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_STLS, A_SYNC, rng.getrandbits(32)]
    kind = rng.randrange(6)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 200))
    if kind == 1:  # a header with a bad magic
        return struct.pack("<6I", rng.choice(commands), 0, 0, 0, 0, rng.getrandbits(32))
    if kind == 2:  # a length far beyond the max payload
        command = rng.choice(commands)
        return struct.pack("<6I", command, 1, 1, rng.randrange(2 << 20, 1 << 32), 0,
                           command ^ 0xFFFFFFFF)
    messages = []
    if kind >= 3:  # a proper CNXN first, then malformed or unauthenticated traffic
        messages.append(Message(A_CNXN, rng.choice([0, A_VERSION, rng.getrandbits(32)]),
                                rng.choice([0, 1, 4096, rng.getrandbits(32)]),
                                rng.randbytes(rng.randrange(0, 64))))
    for _ in range(rng.randrange(1, 8)):
        messages.append(Message(rng.choice(commands), rng.getrandbits(32), rng.getrandbits(32),
                                rng.randbytes(rng.randrange(0, 300))))
    data = b"".join(encode(m, with_checksum=rng.random() < 0.5) for m in messages)
    if kind == 5:  # cut short anywhere
        data = data[:rng.randrange(1, len(data))]
    return data


def test_fuzzed_packets_leave_the_device_answering(trusted):
    adb, device, serial = trusted
    rng = random.Random(9)
    deadline = time.monotonic() + FUZZ_BUDGET_S
    sent = 0
    for _ in range(FUZZ_CONNECTIONS):
        if time.monotonic() > deadline:
            break
        try:
            with socket.create_connection(("127.0.0.1", device.port), timeout=2) as sock:
                sock.sendall(_fuzz_payload(rng))
                sock.settimeout(0.05)
                try:
                    sock.recv(65536)
                except OSError:
                    pass
        except OSError:
            pass  # the device may drop a bad link at once
        sent += 1
    assert sent >= 20
    assert device.process.poll() is None
    assert shell(adb, serial, "echo ok").stdout.strip() == b"ok"


def test_a_flood_of_bad_signatures_is_slowed_to_one_token_a_second(trusted):
    _adb, device, _serial = trusted
    stranger = new_adb_test_key()
    with RawHost(device.port) as host:
        token = host.connect().data
        tokens = 1
        for _ in range(300):  # adbd answers each of the first 256 failures with a new token
            host.send(Message(A_AUTH, ADB_AUTH_SIGNATURE, 0, stranger.sign(token)))
            if tokens <= 256:
                reply = host.receive()
                assert (reply.command, reply.arg0) == (A_AUTH, ADB_AUTH_TOKEN)
                token, tokens = reply.data, tokens + 1
        # Past that, the signatures sent before the next token are dropped unchecked, and one
        # token comes a second later (as adbd sleeps), not one per signature.
        late = host.receive()
        assert (late.command, late.arg0) == (A_AUTH, ADB_AUTH_TOKEN)
        assert not host.has_pending(0.5)


def test_modes_set_on_the_device_never_carry_setuid_to_the_host(trusted, tmp_path):
    adb, device, serial = trusted
    local = tmp_path / "tool"
    local.write_text("#!/system/bin/sh\necho hi\n")
    assert adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/tool").returncode == 0
    assert shell(adb, serial, f"chmod 6755 {REMOTE_TMP}/tool").returncode == 0
    assert shell(adb, serial, f"mkdir -m 4777 {REMOTE_TMP}/sdir").returncode == 0
    adb.client().device(serial=serial).sync.push(str(local), f"{REMOTE_TMP}/pushed", mode=0o6755)
    for name in ("tool", "sdir", "pushed"):
        mode = (device.fs_root / "data/local/tmp" / name).stat().st_mode
        assert mode & 0o7000 == 0, (name, oct(mode))
