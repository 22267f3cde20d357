"""The virtual device as the real adb server (and adbutils) see it: handshake, sync, shell, faults.

Everything goes through a real ``adb`` server process and real device processes over TCP.
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import adbutils
import pytest

from device_agents.virtual.adb_auth import TRUSTED_KEYS_FILE
from device_agents.virtual.faults import clear_faults, set_faults
from device_agents.virtual.protocol import (
    A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_WRTE, HEADER_SIZE, Message,
    ProtocolError, decode_header, device_banner, encode,
)
from device_agents.virtual.sandbox import Sandbox, VirtualDeviceConfig
from device_agents.virtual.services import FEATURES
from harness.targets.adb.session import AdbServer as BenchAdbServer
from harness.targets.adb.session import DeviceSession
from harness.errors import DeviceError
from tests.adb_test_keys import new_adb_test_key
from tests.virtual_lab_fixtures import (SHIPPED_BENCHMARK_MODEL, RawHost, adb_server,
                                        benchmark_processes, virtual_device, wait_until)

REMOTE_TMP = "/data/local/tmp"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size_bytes: int) -> Path:
    path.write_bytes(os.urandom(size_bytes))
    return path


# -- one adb server and one healthy device for the module ------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("virtual_adb")
    with adb_server(base / "adb-home") as adb, virtual_device(base / "dev1", serial="vd-one") as device:
        serial = adb.connect(device)
        yield adb, device, serial
    # Faults and failures are answered on the wire; none may surface as a device-side crash.
    assert "Traceback" not in device.log_tail(100_000), device.log_tail()


@pytest.fixture
def device_handle(lab) -> adbutils.AdbDevice:
    adb, _device, serial = lab
    return adb.client().device(serial=serial)


# -- wire format ------------------------------------------------------------------------------
def test_message_header_round_trips_and_rejects_bad_magic():
    message = Message(A_WRTE, 7, 9, b"hello")
    raw = encode(message)
    header = decode_header(raw[:HEADER_SIZE], max_payload=4096)
    assert (header.command, header.arg0, header.arg1, header.data_length) == (A_WRTE, 7, 9, 5)
    assert raw[HEADER_SIZE:] == b"hello"
    broken = raw[:20] + struct.pack("<I", 0)
    with pytest.raises(ProtocolError):
        decode_header(broken, max_payload=4096)
    with pytest.raises(ProtocolError):
        decode_header(encode(Message(A_CNXN, 0, 0, b"x" * 10))[:HEADER_SIZE], max_payload=4)


def test_banner_carries_product_model_device_and_features():
    banner = device_banner({"ro.product.name": "p", "ro.product.model": "m;x",
                            "ro.product.device": "d"}, FEATURES).decode()
    assert banner == ("device::ro.product.name=p;ro.product.model=m_x;ro.product.device=d;"
                      "features=shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir")


def test_raw_transport_honours_small_max_payload_and_one_write_in_flight(lab):
    _adb, device, _serial = lab
    key = new_adb_test_key()
    with open(device.state_dir / TRUSTED_KEYS_FILE, "a") as keys:
        keys.write(key.public_line() + "\n")
    host = RawHost(device.port)
    reply = host.handshake(key)
    assert (reply.command, reply.arg1) == (A_CNXN, 4096)
    assert reply.data.startswith(b"device::") and b"features=shell_v2" in reply.data

    host.send(Message(A_OPEN, 5, 0, b"no-such-service:\0"))
    refused = host.receive()
    assert (refused.command, refused.arg0, refused.arg1) == (A_CLSE, 0, 5)

    host.send(Message(A_OPEN, 7, 0, b"sync:\0"))
    ready = host.receive()
    assert (ready.command, ready.arg1) == (A_OKAY, 7)
    device_id = ready.arg0
    payload = os.urandom(10_000)
    path = b"/data/local/tmp/raw/split.bin,420"
    request = (b"SEND" + struct.pack("<I", len(path)) + path + b"DATA"
               + struct.pack("<I", len(payload)) + payload + b"DONE" + struct.pack("<I", 1_600_000_000))
    # Split the sync byte stream at odd places: the device must reassemble it.
    for start in range(0, len(request), 3001):
        host.send(Message(A_WRTE, 7, device_id, request[start:start + 3001]))
        ack = host.receive()
        assert (ack.command, ack.arg0, ack.arg1) == (A_OKAY, device_id, 7)
    answer = host.receive()
    assert (answer.command, answer.data) == (A_WRTE, b"OKAY\0\0\0\0")
    host.send(Message(A_OKAY, 7, device_id))
    assert (device.fs_root / "data/local/tmp/raw/split.bin").read_bytes() == payload

    recv = b"/data/local/tmp/raw/split.bin"
    host.send(Message(A_WRTE, 7, device_id, b"RECV" + struct.pack("<I", len(recv)) + recv))
    received = b""
    while not received.endswith(b"DONE\0\0\0\0"):
        message = host.receive()
        if message.command == A_OKAY:
            continue  # the ack of our RECV request
        assert message.command == A_WRTE and len(message.data) <= 4096
        # Until we acknowledge, the device may not send the next WRTE of this stream.
        assert not host.has_pending(0.05)
        received += message.data
        host.send(Message(A_OKAY, 7, device_id))
    assert payload in received
    host.sock.close()


# -- handshake --------------------------------------------------------------------------------
def test_adb_lists_device_with_product_and_model(lab):
    adb, device, serial = lab
    out = adb.run("devices", "-l").stdout.decode()
    line = next(l for l in out.splitlines() if l.startswith(serial))
    assert line.split()[1] == "device"
    assert "product:bench_virtual_x86_64" in line
    assert "model:bench_Virtual_x86_64_host_CPU" in line
    assert "device:virtual_x86_64" in line
    features = adb.run("-s", serial, "features").stdout.decode().split()
    assert set(features) == set(FEATURES)


def test_unknown_service_is_refused(device_handle):
    with device_handle.open_transport() as conn:
        conn.send_command("no-such-service:")
        with pytest.raises(adbutils.AdbError, match="closed"):
            conn.check_okay()


# -- sync with the adb CLI --------------------------------------------------------------------
def test_cli_push_then_pull_50mb_round_trips(lab, tmp_path):
    adb, device, serial = lab
    local = random_file(tmp_path / "big.bin", 50 * 1000 * 1000)
    pushed = adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/big.bin")
    assert pushed.returncode == 0, pushed.stderr
    on_device = device.fs_root / "data/local/tmp/big.bin"
    assert on_device.stat().st_size == local.stat().st_size
    pulled = adb.run("-s", serial, "pull", f"{REMOTE_TMP}/big.bin", str(tmp_path / "back.bin"))
    assert pulled.returncode == 0, pulled.stderr
    assert sha256_of(tmp_path / "back.bin") == sha256_of(local)
    # The pushed mtime (DONE) and mode (SEND path,mode) are applied on the device.
    assert int(on_device.stat().st_mtime) == int(local.stat().st_mtime)
    assert stat.S_IMODE(on_device.stat().st_mode) == stat.S_IMODE(local.stat().st_mode)
    on_device.unlink()


def test_cli_push_creates_missing_parent_folders(lab, tmp_path):
    adb, device, serial = lab
    local = random_file(tmp_path / "small.bin", 70_000)
    result = adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/a/b/c/small.bin")
    assert result.returncode == 0, result.stderr
    assert (device.fs_root / "data/local/tmp/a/b/c/small.bin").read_bytes() == local.read_bytes()


def test_cli_ls_and_directory_pull_use_v2_listing(lab, tmp_path):
    adb, device, serial = lab
    folder = device.fs_root / "data/local/tmp/listing"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_bytes(b"1")
    (folder / "sub" / "two.txt").write_bytes(b"22")
    listing = adb.run("-s", serial, "ls", f"{REMOTE_TMP}/listing").stdout.decode()
    assert {line.split()[-1] for line in listing.splitlines()} >= {"one.txt", "sub"}
    pulled = adb.run("-s", serial, "pull", f"{REMOTE_TMP}/listing", str(tmp_path))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "listing" / "sub" / "two.txt").read_bytes() == b"22"


def test_cli_pull_of_missing_file_fails_with_message(lab, tmp_path):
    adb, _device, serial = lab
    result = adb.run("-s", serial, "pull", f"{REMOTE_TMP}/missing.bin", str(tmp_path / "x"))
    assert result.returncode != 0
    # adb 36 prints it on stderr, Debian's adb 29 on stdout: the message is what the device owes.
    assert "No such file or directory" in (result.stdout + result.stderr).decode()


# -- sync with adbutils (sync v1 only) --------------------------------------------------------
def test_adbutils_push_stat_list_pull(device_handle, lab, tmp_path):
    local = random_file(tmp_path / "model.tflite", 3 * 1000 * 1000 + 17)
    remote = f"{REMOTE_TMP}/adbutils/model.tflite"
    assert device_handle.sync.push(str(local), remote, mode=0o644) == local.stat().st_size
    info = device_handle.sync.stat(remote)
    assert info.size == local.stat().st_size
    assert stat.S_ISREG(info.mode) and stat.S_IMODE(info.mode) == 0o644
    assert not device_handle.sync.exists(f"{REMOTE_TMP}/adbutils/nothing-here")
    names = {entry.path for entry in device_handle.sync.list(f"{REMOTE_TMP}/adbutils")}
    assert "model.tflite" in names
    device_handle.sync.pull(remote, tmp_path / "back.tflite")
    assert sha256_of(tmp_path / "back.tflite") == sha256_of(local)


# -- sync with bench's own push (harness.targets.adb.session) -------------------------------------
@pytest.fixture
def bench_session(lab) -> DeviceSession:
    adb, _device, serial = lab
    return DeviceSession(serial, BenchAdbServer("127.0.0.1", adb.port), timeout_s=20)


def test_bench_push_writes_the_exact_bytes_and_mode_and_reports_progress(bench_session, lab,
                                                                         tmp_path):
    _adb, device, _serial = lab
    # Not a multiple of 64 KiB: the last DATA chunk is a short one.
    local = random_file(tmp_path / "benchmark_model", 3 * 1024 * 1024 + 4097)
    size_bytes = local.stat().st_size
    seen = []
    remote = f"{REMOTE_TMP}/bench-push/benchmark_model"
    assert bench_session.push(local, remote, mode=0o755, progress=seen.append) == size_bytes
    on_device = device.fs_root / remote.lstrip("/")
    assert on_device.read_bytes() == local.read_bytes()
    assert stat.S_IMODE(on_device.stat().st_mode) == 0o755
    assert seen and seen == sorted(seen) and seen[-1] == size_bytes
    # An empty file, and a push into a folder (the file keeps its name there, as adb push).
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert bench_session.push(empty, f"{REMOTE_TMP}/bench-push") == 0
    assert (on_device.parent / "empty.tflite").read_bytes() == b""
    assert stat.S_IMODE((on_device.parent / "empty.tflite").stat().st_mode) == 0o644


def test_bench_prepare_files_reports_progress_over_all_files(bench_session, lab, tmp_path):
    from harness.targets.adb.discovery import DeviceTarget
    from harness.targets.adb.provider import AdbTarget
    from harness.targets.base import TargetFile

    target = AdbTarget(DeviceTarget(bench_session.serial, bench_session.server, "device"))
    first, second = random_file(tmp_path / "a.bin", 70_000), random_file(tmp_path / "b.bin", 9)
    files = [TargetFile(first, f"{REMOTE_TMP}/bench-cached/a.bin", sha256_of(first)),
             TargetFile(second, f"{REMOTE_TMP}/bench-cached/b.bin", sha256_of(second))]
    seen = []
    assert target.prepare_files(files, progress=seen.append) == 70_009
    assert seen == sorted(seen) and seen[-1] == 70_009
    assert target.prepare_files(files, progress=seen.append) == 0  # already there


@contextmanager
def room_left(device, free_bytes: int):
    """The device's /data full but for `free_bytes` (its quota counts what earlier tests left
    there too), until the block ends."""
    quota_bytes = Sandbox(device.state_dir).used_bytes() + free_bytes
    set_faults(device.state_dir, storage_quota_bytes=quota_bytes)
    try:
        yield
    finally:
        clear_faults(device.state_dir)


def test_bench_push_to_a_full_device_says_why_and_how_much_is_free(bench_session, lab, tmp_path):
    _adb, device, _serial = lab
    with room_left(device, 500_000):
        local = random_file(tmp_path / "too-big.bin", 2_000_000)
        with pytest.raises(DeviceError) as failed:
            bench_session.push(local, f"{REMOTE_TMP}/bench-full/too-big.bin")
        message = str(failed.value)
        assert "No space left on device" in message  # the device's own FAIL message
        assert "bytes free, file is 2000000" in message
        # The link is fine afterwards: the next push on the same session goes through.
        small = random_file(tmp_path / "fits.bin", 1000)
        assert bench_session.push(small, f"{REMOTE_TMP}/bench-full/fits.bin") == 1000


def test_push_through_symlink_out_of_sandbox_is_refused(device_handle, lab, tmp_path):
    _adb, device, _serial = lab
    outside = tmp_path / "outside"
    outside.mkdir()
    (device.fs_root / "data/local/tmp/way-out").symlink_to(outside)
    with pytest.raises(adbutils.AdbError):
        device_handle.sync.push(b"escape", f"{REMOTE_TMP}/way-out/escaped.txt")
    assert list(outside.iterdir()) == []
    (device.fs_root / "data/local/tmp/way-out").unlink()


def test_many_concurrent_pulls_on_one_device(device_handle, lab, tmp_path):
    _adb, device, _serial = lab
    sources = {}
    for i in range(6):
        data = os.urandom(400_000 + i)
        (device.fs_root / f"data/local/tmp/par{i}.bin").write_bytes(data)
        sources[i] = hashlib.sha256(data).hexdigest()
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def pull(i: int) -> None:
        try:
            results[i] = hashlib.sha256(
                device_handle.sync.read_bytes(f"{REMOTE_TMP}/par{i}.bin")).hexdigest()
        except BaseException as error:  # reported below, in the test thread
            errors.append(error)

    threads = [threading.Thread(target=pull, args=(i,)) for i in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == sources


# -- shell (needs device_agents.virtual.shell) ------------------------------------------------
def test_cli_shell_reports_exit_status(lab):
    adb, _device, serial = lab
    result = adb.run("-s", serial, "shell", "exit 3")
    assert result.returncode == 3, result.stderr


def test_cli_shell_getprop_abi(lab):
    adb, _device, serial = lab
    result = adb.run("-s", serial, "shell", "getprop ro.product.cpu.abi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "x86_64"


def test_cli_shell_separates_stdout_and_stderr_and_takes_stdin(lab):
    adb, _device, serial = lab
    result = adb.run("-s", serial, "shell", "echo out; echo err >&2")
    assert (result.stdout.decode(), result.stderr.decode()) == ("out\n", "err\n")
    exec_out = adb.run("-s", serial, "exec-out", "echo out; echo err >&2")
    assert (exec_out.returncode, exec_out.stdout) == (0, b"out\n")
    piped = adb.run("-s", serial, "shell", f"cat > {REMOTE_TMP}/stdin.txt",
                    input_bytes=b"from stdin\n")
    assert piped.returncode == 0, piped.stderr
    assert adb.run("-s", serial, "shell", f"cat {REMOTE_TMP}/stdin.txt").stdout == b"from stdin\n"


def test_adbutils_shell_v2_and_legacy(device_handle):
    result = device_handle.shell2("echo hi; exit 7", v2=True)
    assert (result.returncode, result.output.strip()) == (7, "hi")
    # Legacy shell: no exit packet, adbutils appends "; echo X4EXIT:$?" itself.
    legacy = device_handle.shell2("echo legacy; false")
    assert (legacy.returncode, legacy.output.strip()) == (1, "legacy")
    assert device_handle.shell("getprop ro.product.cpu.abi") == "x86_64"


def test_many_concurrent_shells_on_one_device(device_handle):
    outputs: dict[int, tuple[int, str]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            result = device_handle.shell2(f"echo start{i}; sleep 0.3; echo end{i}; exit {i}", v2=True)
            outputs[i] = (result.returncode, result.output.split())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert outputs == {i: (i, [f"start{i}", f"end{i}"]) for i in range(8)}


def test_host_closing_a_stream_stops_its_command(device_handle, lab):
    _adb, device, _serial = lab
    started = device.fs_root / "data/local/tmp/started.flag"
    finished = device.fs_root / "data/local/tmp/finished.flag"
    with device_handle.open_transport() as conn:
        conn.send_command(f"shell,v2,raw:touch {REMOTE_TMP}/started.flag; sleep 1.5; "
                          f"touch {REMOTE_TMP}/finished.flag")
        conn.check_okay()
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
    # The connection closed (host CLSE) long before the sleep ends: the command is cancelled.
    time.sleep(2.5)
    assert not finished.exists()


# -- faults (their own device, so the shared one stays healthy) -------------------------------
def test_drop_fault_mid_push_takes_device_offline_until_cleared(lab, tmp_path):
    adb, _device, _serial = lab
    with virtual_device(tmp_path / "flaky", serial="vd-flaky") as flaky:
        serial = adb.connect(flaky)
        set_faults(flaky.state_dir, drop_after_push_bytes=2_000_000)
        local = random_file(tmp_path / "payload.bin", 8_000_000)
        result = adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/payload.bin")
        assert result.returncode != 0
        # No partial file is left on the device.
        assert list((flaky.fs_root / "data/local/tmp").iterdir()) == []
        # The server sees the link die; while the fault is on the device stays unreachable.
        assert adb.states().get(serial) != "device"
        reconnect = adb.run("connect", flaky.address).stdout.decode()
        assert adb.states().get(serial) != "device", reconnect

        clear_faults(flaky.state_dir)
        adb.run("disconnect", flaky.address)
        assert adb.connect(flaky) == serial
        again = adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/payload.bin")
        assert again.returncode == 0, again.stderr
        assert sha256_of(flaky.fs_root / "data/local/tmp/payload.bin") == sha256_of(local)
        adb.run("disconnect", flaky.address)


def test_drop_during_benchmark_cuts_link_and_kills_the_run(lab, tmp_path, tiny_model):
    adb, _device, _serial = lab
    with virtual_device(tmp_path / "flaky-bm", serial="vd-flaky-bm") as flaky:
        serial = adb.connect(flaky)
        # The shipped benchmark_model arms the fault; --min_secs makes it outlive the drop.
        for local in (SHIPPED_BENCHMARK_MODEL, tiny_model):
            assert adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/").returncode == 0
        set_faults(flaky.state_dir, drop_during_benchmark_s=0.3, offline_for_s=600)
        result = adb.run("-s", serial, "shell", f"cd {REMOTE_TMP} && chmod 755 benchmark_model && "
                         f"./benchmark_model --graph={tiny_model.name} --min_secs=30 --num_runs=100000")
        assert result.returncode != 0
        assert adb.states().get(serial) != "device"
        assert wait_until(lambda: not benchmark_processes(flaky.fs_root), timeout_s=30)
        clear_faults(flaky.state_dir)
        adb.run("disconnect", flaky.address)
        assert adb.connect(flaky) == serial
        adb.run("disconnect", flaky.address)


def test_storage_quota_fault_fails_push_and_leaves_nothing(lab, device_handle, tmp_path):
    adb, device, serial = lab
    with room_left(device, 1_000_000):
        local = random_file(tmp_path / "too-big.bin", 3_000_000)
        result = adb.run("-s", serial, "push", str(local), f"{REMOTE_TMP}/quota/too-big.bin")
        assert result.returncode != 0
        assert "No space left on device" in result.stderr.decode()
        with pytest.raises(adbutils.AdbError):
            device_handle.sync.push(str(local), f"{REMOTE_TMP}/quota/too-big-2.bin")
        assert list((device.fs_root / "data/local/tmp/quota").iterdir()) == []
        # A file that fits still goes through, and the device stays online.
        small = random_file(tmp_path / "fits.bin", 100_000)
        assert adb.run("-s", serial, "push", str(small), f"{REMOTE_TMP}/quota/").returncode == 0
        assert adb.states()[serial] == "device"


# -- process ----------------------------------------------------------------------------------
def test_device_process_records_port_and_exits_cleanly_on_sigterm(tmp_path):
    with virtual_device(tmp_path / "short-lived", serial="vd-short") as device:
        saved = VirtualDeviceConfig.load(device.state_dir)
        assert (saved.serial, saved.port) == ("vd-short", device.port)
        assert (device.fs_root / "data/local/tmp").is_dir()
        device.process.terminate()
        assert device.process.wait(timeout=30) == 0, device.log_tail()


def test_temperature_fault_reaches_thermal_files(lab):
    adb, device, serial = lab
    zone = device.fs_root / "sys/class/thermal/thermal_zone0/temp"
    set_faults(device.state_dir, temperature_c=47.5)
    try:
        deadline = time.monotonic() + 30
        while zone.read_text().strip() != "47500" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert zone.read_text().strip() == "47500"
    finally:
        clear_faults(device.state_dir)
    deadline = time.monotonic() + 30
    while zone.read_text().strip() == "47500" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zone.read_text().strip() != "47500"
