"""Two adb servers, each with its own virtual device: listing, selection, and every push and
shell going to the device's own server (never to the other one, never to a default server)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import load_config
from harness.targets.adb.discovery import known_servers, list_targets, select_devices
from harness.targets.adb.session import AdbServer, DeviceSession, list_device_states
from harness.errors import DeviceError, UserError
from harness.targets.adb.virtual_lab import connect_device, free_port, start_adb_server, start_virtual_device

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADB = ("127.0.0.1", 5037)


def _listening(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started (each leads its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    """rack-a and rack-b: an adb server each, one virtual device each; plus a dead address."""
    base = tmp_path_factory.mktemp("two_servers")
    default_was_up = _listening(DEFAULT_ADB)
    procs, lab = [], {}
    try:
        for name in ("rack-a", "rack-b"):
            port = free_port()
            procs.append(start_adb_server(port, base / f"{name}-adb.log"))
            server = AdbServer("127.0.0.1", port, name=name)
            device_port = free_port()
            state_dir = base / f"{name}-device"
            procs.append(start_virtual_device(state_dir, serial=f"VIRT-{name}", port=device_port))
            serial = f"127.0.0.1:{device_port}"
            connect_device(server, serial)
            lab[name] = (server, serial, state_dir / "fs")
        dead_port = free_port()  # nothing listens here: a lab host that is down
        (base / "bench.toml").write_text(
            "[lab.servers]\n"
            + "".join(f'{n} = "{s.address}"\n' for n, (s, _serial, _fs) in lab.items())
            + f'rack-dead = "127.0.0.1:{dead_port}"\n'
            + "[lab.tags]\n"
            + f'"{lab["rack-a"][1]}" = ["big", "pixel"]\n'
            + f'"{lab["rack-b"][1]}" = ["small"]\n')
        yield base, lab, default_was_up
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_each_server_knows_only_its_own_device(two_servers):
    _base, lab, _ = two_servers
    (a, serial_a, _), (b, serial_b, _) = lab["rack-a"], lab["rack-b"]
    assert dict(list_device_states(a)) == {serial_a: "device"}
    assert dict(list_device_states(b)) == {serial_b: "device"}


def test_bench_devices_lists_both_servers_and_warns_about_the_dead_one(two_servers):
    base, lab, _ = two_servers
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_STATE_DIR=str(base / "no-virtual-lab"))
    result = subprocess.run([sys.executable, "-m", "harness", "devices", "--json"], cwd=base,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = {d["serial"]: d for d in json.loads(result.stdout)}
    assert {serial: d["server"] for serial, d in listed.items()} == {
        lab["rack-a"][1]: "rack-a", lab["rack-b"][1]: "rack-b"}
    assert all(d["state"] == "device" and d["abi"] == "x86_64" for d in listed.values())
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "rack-dead" in warnings[0]


def test_push_and_shell_go_to_the_devices_own_server(two_servers, tmp_path):
    _base, lab, _ = two_servers
    for name, (server, serial, fs) in lab.items():
        other_name = "rack-b" if name == "rack-a" else "rack-a"
        other_fs = lab[other_name][2]
        local = tmp_path / f"payload-{name}.bin"
        local.write_bytes(os.urandom(300_000) + name.encode())
        session = DeviceSession(serial, server, timeout_s=20)
        assert session.push(local, f"/data/local/tmp/payload-{name}.bin") == local.stat().st_size
        result = session.shell(f"echo shell-on-{name} > /data/local/tmp/shell-{name}.txt; "
                               f"getprop ro.serialno")
        assert (result.status, result.stdout.strip()) == (0, f"VIRT-{name}")
        # The bytes landed in this device's sandbox, and only there.
        assert (fs / f"data/local/tmp/payload-{name}.bin").read_bytes() == local.read_bytes()
        assert (fs / f"data/local/tmp/shell-{name}.txt").read_text().strip() == f"shell-on-{name}"
        assert not (other_fs / f"data/local/tmp/payload-{name}.bin").exists()
        assert not (other_fs / f"data/local/tmp/shell-{name}.txt").exists()
        # The other server does not know this device: a call through it fails, it never reroutes.
        wrong = DeviceSession(serial, lab[other_name][0], timeout_s=10)
        assert wrong.state() == "not found"
        with pytest.raises(DeviceError):
            wrong.shell("echo hi")


def test_selectors_across_both_servers(two_servers):
    base, lab, _ = two_servers
    config = load_config(base / "bench.toml")
    servers = [s for s in known_servers(config.lab) if s.name != "virtual-lab"]
    assert [s.name for s in servers] == ["rack-a", "rack-b", "rack-dead"]
    serial_a, serial_b = lab["rack-a"][1], lab["rack-b"][1]

    def chosen(selector):
        return [(t.serial, t.server.name, t.state)
                for t in select_devices(selector, servers, config.lab)]

    assert chosen("all") == [(serial_a, "rack-a", "device"), (serial_b, "rack-b", "device")]
    assert chosen("tag:small") == [(serial_b, "rack-b", "device")]
    assert chosen("abi:x86_64") == chosen("all")
    assert chosen(f"server:rack-b,{serial_a}") == [(serial_b, "rack-b", "device"),
                                                    (serial_a, "rack-a", "device")]
    assert chosen("GHOST1") == [("GHOST1", "rack-a", "not found")]
    with pytest.raises(UserError) as info:
        chosen("tag:huge")
    message = str(info.value)
    assert f"{serial_a} (server rack-a, device, model bench Virtual x86_64 host-CPU, " \
           f"abi x86_64, tags big,pixel)" in message
    assert f"{serial_b} (server rack-b" in message and "rack-dead" in message


def test_a_dead_server_is_reported_and_never_starts_a_default_server(two_servers, monkeypatch):
    _base, lab, _default_was_up = two_servers
    # adbutils runs `adb start-server` when a connection fails; that server goes to the port in
    # ANDROID_ADB_SERVER_PORT (else 5037). Point it at a free port we can watch.
    watched = ("127.0.0.1", free_port())
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(watched[1]))
    dead = AdbServer("127.0.0.1", free_port(), name="rack-dead")
    targets, unreachable = list_targets([dead, lab["rack-a"][0]])
    assert [t.serial for t in targets] == [lab["rack-a"][1]]
    assert list(unreachable) == ["rack-dead"]
    with pytest.raises(DeviceError):
        DeviceSession("127.0.0.1:5555", dead, timeout_s=5).shell("echo hi")
    with pytest.raises(DeviceError):
        DeviceSession("127.0.0.1:5555", dead, timeout_s=5).push(Path(__file__), "/data/local/tmp/x")
    assert not _listening(watched)


def test_no_server_appeared_on_the_default_port(two_servers):
    _base, _lab, default_was_up = two_servers
    if default_was_up:
        pytest.skip("something already listened on 127.0.0.1:5037 before this module")
    assert not _listening(DEFAULT_ADB)


def test_plain_adbutils_would_have_started_a_server(monkeypatch):
    """The check above can fail: adbutils' own client starts a server on a failed connection."""
    import adbutils

    watched_port = free_port()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(watched_port))
    try:
        with pytest.raises(adbutils.AdbError):
            adbutils.AdbClient("127.0.0.1", free_port(), socket_timeout=5).list()
        assert _listening(("127.0.0.1", watched_port))
    finally:
        # The server adbutils started is stopped by the same adb.
        subprocess.run([adbutils.adb_path(), "-P", str(watched_port), "kill-server"],
                       capture_output=True, timeout=30)


def test_bench_run_all_measures_on_both_servers(two_servers, tmp_path, monkeypatch):
    from harness.config import BenchmarkSettings
    from harness.run import run_benchmarks

    base, lab, _ = two_servers
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path / "no-virtual-lab"))
    config = load_config(base / "bench.toml")
    config.store_path, config.reports_dir = tmp_path / "bench.db", tmp_path / "reports"
    config.peak_memory = False
    config.benchmark = BenchmarkSettings(num_runs=3, min_secs=0.02, warmup_min_secs=0.01, max_secs=20)
    result = run_benchmarks(config)
    assert result.exit_code == 0, [m.error for m in result.measurements]
    assert {(m.device_serial, m.adb_server) for m in result.measurements} == {
        (serial, name) for name, (_server, serial, _fs) in lab.items()}
    for _name, (_server, _serial, fs) in lab.items():  # each device got its own push
        assert (fs / "data/local/tmp/bench/benchmark_model").exists()
