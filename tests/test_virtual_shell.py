"""The virtual device's /system/bin/sh, driven through run_command as the ADB transport does."""
from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from device_agents.virtual.faults import FaultWatcher, set_faults
from device_agents.virtual.process import ShippedProgram, trusted_programs
from device_agents.virtual.sandbox import Sandbox, VirtualDeviceConfig
from device_agents.virtual.android_tools import FIXED_PERFORMANCE_KEY, load_settings
from device_agents.virtual.shell import Interpreter, ShellContext, run_command
from tests.virtual_lab_fixtures import host_processes_with_root

# Generous guard so a broken stream fails the test instead of hanging it; never a timing check.
HANG_GUARD_S = 120


@dataclass
class Result:
    status: int
    out: str
    err: str


@dataclass
class Device:
    state_dir: Path
    sandbox: Sandbox
    ctx: ShellContext
    drops: list[int] = field(default_factory=list)

    def host(self, device_path: str) -> Path:
        return self.sandbox.host_path(device_path)

    def install(self, device_path: str, program: str, benchmark: bool = False) -> Path:
        """An executable at ``device_path`` that runs ``tests.device_test_programs.<program>``:
        its content hash is registered with the device, as the shipped tool's is."""
        content = f"{PY}# bench test program {program}\n"
        self.ctx.programs[hashlib.sha256(content.encode()).hexdigest()] = ShippedProgram(
            f"tests.device_test_programs:{program}", is_benchmark=benchmark)
        return self.write(device_path, content, 0o755)

    def write(self, device_path: str, text: str | bytes, mode: int = 0o644) -> Path:
        path = self.host(device_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        path.chmod(mode)
        return path

    async def run_async(self, command: str, stdin: bytes = b"", on_out=None) -> Result:
        out, err = bytearray(), bytearray()

        async def collect_out(data: bytes) -> None:
            out.extend(data)
            if on_out is not None:
                on_out(data)

        async def collect_err(data: bytes) -> None:
            err.extend(data)

        status = await asyncio.wait_for(
            run_command(command, self.ctx, collect_out, collect_err, stdin), HANG_GUARD_S)
        return Result(status, out.decode(), err.decode())

    def run(self, command: str, stdin: bytes = b"") -> Result:
        return asyncio.run(self.run_async(command, stdin))


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return make_device(tmp_path / "device")


def make_device(state_dir: Path, host_cpus: list[int] | None = None) -> Device:
    config = VirtualDeviceConfig(serial="virtual-test", port=0, state_dir=str(state_dir),
                                 host_cpus=host_cpus)
    config.save()
    sandbox = Sandbox(state_dir)
    sandbox.create_layout(config)
    dev = Device(state_dir, sandbox, None)  # type: ignore[arg-type]
    dev.ctx = ShellContext(sandbox, config, FaultWatcher(state_dir), lambda: dev.drops.append(1),
                           programs=dict(trusted_programs()))
    return dev


PY = "#!/usr/bin/env python3\n"


# -- grammar -------------------------------------------------------------------------------------
def test_quoting_and_escapes(device):
    r = device.run("""echo 'a  $HOME' "b  $HOME" c\\ d "q\\"x" 'it'\\''s'""")
    assert r == Result(0, "a  $HOME b  / c d q\"x it's\n", "")


def test_sequences_and_or_and_status(device):
    r = device.run("false; echo $?; true && echo yes || echo no; false && echo yes || echo no")
    assert r.out == "1\nyes\nno\n"
    assert device.run("false || false").status == 1
    assert device.run("true; false").status == 1


def test_redirections(device):
    r = device.run("echo hi > /data/local/tmp/f; echo there >> /data/local/tmp/f; cat < /data/local/tmp/f")
    assert r.out == "hi\nthere\n"
    assert device.host("/data/local/tmp/f").read_text() == "hi\nthere\n"
    assert device.run("echo gone >/dev/null") == Result(0, "", "")
    silent = device.run("cat /nope 2>/dev/null")
    assert (silent.status, silent.err) == (1, "")
    merged = device.run("cat /nope 2>&1")
    assert merged.out == "cat: /nope: No such file or directory\n" and merged.err == ""
    # Order matters as in sh: stderr goes where stdout pointed before stdout moved.
    ordered = device.run("cat /nope 2>&1 >/dev/null")
    assert ordered.out == "cat: /nope: No such file or directory\n"
    missing_dir = device.run("echo x > /data/nodir/f")
    assert missing_dir.status == 1
    assert "can't create /data/nodir/f: No such file or directory" in missing_dir.err


def test_pipes(device):
    r = device.run("getprop | grep abilist64 | cat")
    assert r.out == "[ro.product.cpu.abilist64]: [x86_64]\n"
    assert device.run("echo one two | wc -c").out == "8\n"


def test_variables(device):
    r = device.run('X=5; echo ${X} $X$X "$TMPDIR" ${NOPE:-fallback} [$NOPE]')
    assert r.out == "5 55 /data/local/tmp fallback []\n"
    r = device.run("A=1 sh -c 'echo in:$A'; echo \"out:[$A]\"")
    assert r.out == "in:1\nout:[]\n"
    assert device.run("echo $(getprop ro.build.version.sdk)-x").out == "34-x\n"


def test_syntax_errors_and_unknown_commands(device):
    for line in ("echo a &&", "| echo", "echo 'open", "a && && b"):
        r = device.run(line)
        assert r.status == 2, line
        assert r.err.startswith("/system/bin/sh: 1: syntax error: "), r.err
    r = device.run("frobnicate --now")
    assert r == Result(127, "", "/system/bin/sh: frobnicate: inaccessible or not found\n")


def test_exit_cd_and_test(device):
    assert device.run("exit 3; echo never") == Result(3, "", "")
    assert device.run("exit 300").status == 300 & 0xFF
    r = device.run("cd /data/local/tmp && pwd && touch f && [ -f f ] && test -d . && echo ok")
    assert r.out == "/data/local/tmp\nok\n"
    assert device.run("cd /nope").status != 0
    device.write("/data/local/tmp/run.sh", "x", 0o755)
    checks = {
        "test -e /data": 0, "test -e /nope": 1, "[ -d /data/local/tmp/run.sh ]": 1,
        "[ -x /data/local/tmp/run.sh ]": 0, "[ -x /system/build.prop ]": 1,
        "[ a = a ]": 0, "[ a != a ]": 1, "[ ! -e /nope ]": 0, "[ 3 -gt 2 ]": 0,
    }
    for line, status in checks.items():
        assert device.run(line).status == status, line


def test_sandbox_escapes_are_refused(device, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    r = device.run("cat /../../etc/passwd")
    assert r.status == 1 and "root:" not in r.out
    device.host("/data/local/tmp/link").symlink_to(secret)
    r = device.run("cat /data/local/tmp/link")
    assert r.status == 1 and "host secret" not in r.out
    assert r.err == "cat: /data/local/tmp/link: Permission denied\n"
    assert device.run("cd /../../..; pwd").out == "/\n"
    device.run("echo x > /../../outside.txt")
    assert not (tmp_path / "outside.txt").exists()
    assert device.host("/outside.txt").read_text() == "x\n"


# -- builtins ---------------------------------------------------------------------------------------
def test_getprop(device):
    everything = device.run("getprop").out.splitlines()
    keys = [line.split("]: [", 1)[0].lstrip("[") for line in everything]
    assert keys == sorted(keys) and len(keys) == len(device.ctx.config.props())
    assert "[ro.product.cpu.abi]: [x86_64]" in everything
    assert device.run("getprop ro.product.cpu.abi").out == "x86_64\n"
    assert device.run("getprop no.such.prop") == Result(0, "\n", "")


def test_dumpsys_battery_follows_faults(device):
    normal = device.run("dumpsys battery").out
    assert normal.startswith("Current Battery Service state:\n  AC powered: false\n  USB powered: true\n")
    for line in ("  level: 85", "  scale: 100", "  temperature: 290", "  technology: Li-ion"):
        assert line in normal.splitlines()
    set_faults(device.state_dir, battery_level=20, temperature_c=41.5)
    faulted = device.run("dumpsys battery").out.splitlines()
    assert "  level: 20" in faulted and "  temperature: 415" in faulted


@pytest.mark.parametrize("temperature_c,status", [(None, 0), (47, 1), (52, 2), (57, 3), (65, 4)])
def test_dumpsys_thermalservice_and_thermal_zones(device, temperature_c, status):
    set_faults(device.state_dir, temperature_c=temperature_c)
    lines = device.run("dumpsys thermalservice").out.splitlines()
    assert lines[0] == "IsStatusOverride: false"
    assert f"Thermal Status: {status}" in lines
    assert "HAL Ready: true" in lines
    celsius = 35.0 if temperature_c is None else float(temperature_c)
    assert f"\tTemperature{{mValue={celsius:.1f}, mType=0, mName=cpu-0-0-usr, mStatus={status}}}" in lines
    zone = device.run("cat /sys/class/thermal/thermal_zone0/temp").out
    assert zone == f"{int(celsius * 1000)}\n"


def test_df_honours_quota(device):
    quota_bytes = 10 * 1024 * 1024
    set_faults(device.state_dir, storage_quota_bytes=quota_bytes)
    device.write("/data/local/tmp/blob", b"\0" * (1024 * 1024))
    lines = device.run("df").out.splitlines()
    assert lines[0].split() == ["Filesystem", "1K-blocks", "Used", "Available", "Use%", "Mounted", "on"]
    rows = {line.split()[-1]: line.split() for line in lines[1:]}
    assert set(rows) == {"/data", "/sdcard"}
    assert rows["/data"][1:5] == ["10240", "1024", "9216", "10%"]
    single = device.run("df -k /data/local/tmp").out.splitlines()
    assert len(single) == 2 and single[1].split()[-1] == "/data"
    human = device.run("df -h /sdcard").out.splitlines()
    assert human[0].split()[1] == "Size" and human[1].split()[1:4] == ["10M", "1.0M", "9.0M"]
    assert device.run("df /nope").status == 1


def test_sha256sum(device):
    device.write("/data/local/tmp/m.tflite", b"model bytes")
    expected = hashlib.sha256(b"model bytes").hexdigest()
    r = device.run("sha256sum /data/local/tmp/m.tflite /data/local/tmp/missing")
    assert r.status == 1
    assert r.out == f"{expected}  /data/local/tmp/m.tflite\n"
    assert r.err == "sha256sum: /data/local/tmp/missing: No such file or directory\n"


def test_file_tools(device):
    r = device.run(
        "mkdir -p /data/local/tmp/a/b && touch /data/local/tmp/a/b/f && echo 12345 > /data/local/tmp/a/g"
        " && cp /data/local/tmp/a/g /data/local/tmp/a/b && mv /data/local/tmp/a/g /data/local/tmp/h"
        " && ls /data/local/tmp/a/b && stat -c %s /data/local/tmp/h && wc -c /data/local/tmp/h")
    assert r == Result(0, "f\ng\n6\n6 /data/local/tmp/h\n", "")
    assert device.run("mkdir /data/local/tmp/a").err == "mkdir: '/data/local/tmp/a': File exists\n"
    assert device.run("rm /data/local/tmp/a").err == "rm: /data/local/tmp/a: Is a directory\n"
    assert device.run("rm -r /data/local/tmp/a").status == 0
    assert not device.host("/data/local/tmp/a").exists()
    assert device.run("rm /data/local/tmp/none").status == 1
    assert device.run("rm -f /data/local/tmp/none") == Result(0, "", "")
    hidden = device.run("touch /data/local/tmp/.hidden; ls /data/local/tmp; ls -a /data/local/tmp").out
    assert hidden == "h\n.\n..\n.hidden\nh\n"
    assert device.run("ls -l /data/local/tmp/h").out.startswith("-rw-r--r-- ")


def test_chmod_octal_and_symbolic(device):
    path = device.write("/data/local/tmp/tool", "x", 0o644)
    assert device.run("chmod +x /data/local/tmp/tool").status == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert device.run("chmod 700 /data/local/tmp/tool").status == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert device.run("chmod go+r,u-w /data/local/tmp/tool").status == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o544
    assert device.run("chmod 755 /data/local/tmp/none").status == 1


def test_system_tools(device):
    assert device.run("uname -m").out == "x86_64\n"
    assert device.run("uname").out == "Linux\n"
    assert device.run("id").out.startswith("uid=2000(shell) gid=2000(shell) groups=")
    assert device.run("sleep 0.01") == Result(0, "", "")
    assert device.run("nproc").out == f"{len(os.sched_getaffinity(0))}\n"
    assert device.run("getenforce").out == "Enforcing\n"
    assert device.run("logcat -c && logcat -d") == Result(0, "", "")


def test_power_mode_and_settings_are_recorded(device):
    # As PowerManagerShellCommand (Android 11+): silent success; Boolean.parseBoolean, so
    # anything but "true" turns the mode off; no line of `dumpsys power` tells the mode.
    def mode():
        return load_settings(Interpreter(device.ctx)).get(FIXED_PERFORMANCE_KEY)

    assert device.run("cmd power set-fixed-performance-mode-enabled true") == Result(0, "", "")
    assert mode() == "true"
    assert "FixedPerformance" not in device.run("dumpsys power").out
    assert device.run("cmd power set-fixed-performance-mode-enabled maybe") == Result(0, "", "")
    assert mode() == "false"
    assert device.run("cmd power set-fixed-performance-mode-enabled").status == 255
    assert device.run("cmd power no-such-command") == Result(255, "Unknown command: no-such-command\n", "")
    assert device.run("settings get global stay_on").out == "null\n"
    device.run("settings put global stay_on 7")
    assert device.run("settings get global stay_on").out == "7\n"


# -- executing files ----------------------------------------------------------------------------------
def test_exec_missing_and_not_executable(device):
    r = device.run("/data/local/tmp/bench/benchmark_model --graph=x")
    assert r == Result(127, "", "/system/bin/sh: /data/local/tmp/bench/benchmark_model: inaccessible or not found\n")
    device.write("/data/local/tmp/noexec", PY + "print('ran')\n", 0o644)
    r = device.run("cd /data/local/tmp && ./noexec")
    assert r == Result(126, "", "/system/bin/sh: ./noexec: can't execute: Permission denied\n")


def test_exec_refuses_foreign_elf(device):
    # A minimal ELF64 little-endian header for EM_AARCH64 (183), as an arm64 benchmark_model.
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (2).to_bytes(2, "little") + (183).to_bytes(2, "little")
    device.write("/data/local/tmp/benchmark_model", header + b"\0" * 64, 0o755)
    r = device.run("cd /data/local/tmp && ./benchmark_model --graph=m.tflite")
    assert r == Result(126, "", "/system/bin/sh: ./benchmark_model: not executable: 64-bit ELF file\n")


def test_exec_registered_program(device):
    device.install("/data/local/tmp/bench/show", "show")
    r = device.run("cd /data/local/tmp/bench && echo piped | EXTRA=yes LD_PRELOAD=/x.so "
                   "./show --graph='a b' /data/x")
    assert r.status == 3
    # The device shell's variables never reach the host process.
    assert r.out.splitlines() == [
        "--graph=a b /data/x", str(device.sandbox.root), str(device.host("/data/local/tmp/bench")),
        "None None", "PIPED", "",
    ]
    assert r.err == "warn\n"
    assert device.run("/data/local/tmp/bench/show 2>&1 >/dev/null").out == "warn\n"


def test_exec_unregistered_python_script_is_not_found(device):
    device.write("/data/local/tmp/bench/show", PY + "print('ran on the host')\n", 0o755)
    r = device.run("cd /data/local/tmp/bench && ./show")
    assert r == Result(127, "", "/system/bin/sh: ./show: No such file or directory\n")


def test_exec_shell_script(device):
    device.write("/data/local/tmp/run.sh", "#!/system/bin/sh\necho \"arg=$1 n=$#\"\nexit 4\n", 0o755)
    assert device.run("/data/local/tmp/run.sh 'x y' z") == Result(4, "arg=x y n=2\n", "")


def test_child_output_streams_while_it_runs(device):
    go = device.host("/data/local/tmp/go")
    device.install("/data/local/tmp/stream", "stream")
    # The child finishes only after the test saw its first line: output must stream.
    r = asyncio.run(device.run_async(f"/data/local/tmp/stream {go}", on_out=lambda _data: go.touch()))
    assert r == Result(0, "ready\ndone\n", "")


def test_taskset_really_pins_the_child(device):
    device.install("/data/local/tmp/affinity", "affinity")
    cpu = max(os.sched_getaffinity(0))
    r = device.run(f"taskset {1 << cpu:x} /data/local/tmp/affinity")
    assert r == Result(0, f"[{cpu}]\n", "")
    unpinned = device.run("/data/local/tmp/affinity").out
    assert unpinned == f"{sorted(os.sched_getaffinity(0))}\n"
    beyond = 1 << (os.cpu_count() or 1)
    assert device.run(f"taskset {beyond:x} /data/local/tmp/affinity").status == 1
    assert device.run("taskset zz /data/local/tmp/affinity").status == 1
    shown = device.run("taskset -p $$").out
    assert shown.endswith("'s current affinity mask: " + f"{sum(1 << c for c in os.sched_getaffinity(0)):x}\n")


def test_a_device_on_one_host_core_shows_and_uses_only_that_core(tmp_path):
    """`bench lab up` gives a device host cores of its own; the device numbers them from 0."""
    host_cpu = max(os.sched_getaffinity(0))
    dev = make_device(tmp_path / "sliced", host_cpus=[host_cpu])
    cpu_root = dev.host("/sys/devices/system/cpu")
    assert sorted(p.name for p in cpu_root.glob("cpu[0-9]*")) == ["cpu0"]
    assert (cpu_root / "possible").read_text() == "0-0\n"
    assert dev.run("nproc").out == "1\n" and dev.run("nproc --all").out == "1\n"
    cpuinfo = dev.run("cat /proc/cpuinfo").out
    if "processor" in Path("/proc/cpuinfo").read_text():
        assert [line.split(":")[1].strip() for line in cpuinfo.splitlines()
                if line.startswith("processor")] == ["0"]
    dev.install("/data/local/tmp/affinity", "affinity")
    # device core 0 is the host core of the slice; there is no device core 1
    assert dev.run("taskset 1 /data/local/tmp/affinity") == Result(0, f"[{host_cpu}]\n", "")
    assert dev.run("taskset 2 /data/local/tmp/affinity").status == 1
    assert dev.run("taskset -p $$").out.endswith("'s current affinity mask: 1\n")
    assert dev.run("getprop bench.virtual.host_cpus").out == f"{host_cpu}\n"


def test_a_reused_state_dir_loses_the_cores_it_no_longer_has(tmp_path):
    make_device(tmp_path / "dev")  # every host core first
    dev = make_device(tmp_path / "dev", host_cpus=[0])
    assert [p.name for p in dev.host("/sys/devices/system/cpu").glob("cpu[0-9]*")] == ["cpu0"]


def test_signal_death_is_reported_like_mksh(device):
    device.install("/data/local/tmp/segv", "segv")
    assert device.run("/data/local/tmp/segv; echo status=$?") == Result(0, "status=139\n", "Segmentation fault\n")
    device.install("/data/local/tmp/abort", "abort")
    r = device.run("/data/local/tmp/abort")
    assert (r.status, r.err) == (134, "Aborted\n")


# -- faults on benchmark_model -----------------------------------------------------------------------


def test_crash_fault_kills_benchmark_with_sigsegv(device):
    device.install("/data/local/tmp/bench/benchmark_model", "wait_forever", benchmark=True)
    set_faults(device.state_dir, benchmark_crash_after_s=0.2)
    r = device.run("/data/local/tmp/bench/benchmark_model --graph=m.tflite")
    assert (r.status, r.err) == (139, "Segmentation fault\n")
    # Only the benchmark program is faulted.
    device.install("/data/local/tmp/bench/other", "fine")
    assert device.run("/data/local/tmp/bench/other") == Result(0, "fine\n", "")


def test_drop_fault_closes_the_link_while_benchmark_runs(device):
    dropped = device.host("/data/local/tmp/dropped")
    device.install("/data/local/tmp/benchmark_model", "wait_for_file", benchmark=True)
    device.ctx.drop_connection = lambda: (device.drops.append(1), dropped.touch())
    set_faults(device.state_dir, drop_during_benchmark_s=0.1)
    assert device.run(f"/data/local/tmp/benchmark_model {dropped}").status == 0
    assert device.drops == [1]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_hang_fault_stops_benchmark_until_the_stream_closes(device):
    device.install("/data/local/tmp/bench/benchmark_model", "wait_forever", benchmark=True)
    set_faults(device.state_dir, benchmark_hang=True)

    async def scenario() -> list[int]:
        task = asyncio.create_task(device.run_async("/data/local/tmp/bench/benchmark_model"))
        while not (pids := host_processes_with_root(device.sandbox.root)):
            await asyncio.sleep(0.02)
        while _state(pids[0]) != "T":  # stopped by SIGSTOP, so it never finishes
            await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()  # the host closes the stream
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids

    pids = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
    assert host_processes_with_root(device.sandbox.root) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
