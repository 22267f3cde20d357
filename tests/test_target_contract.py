"""The contract every device target and provider must pass (harness.targets.base): a new one
(a lab host's, a Ray actor's) gets a subclass of TargetContract with its own `provider` fixture.
Run here on a real virtual device behind the real adb server."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults
from harness.targets.base import Cancelled, CommandTimeout
from harness.targets.adb.virtual_lab import lab_down, lab_up
from harness.targets.adb.provider import AdbProvider
from harness.targets.base import NOT_FOUND, ONLINE, Provider, Target, TargetFile

REMOTE_DIR = "/data/local/tmp/bench-contract"


class TargetContract:
    """Template tests; a subclass provides the `provider` fixture (one ONLINE device)."""

    @pytest.fixture
    def target(self, provider: Provider) -> Target:
        [online] = [t for t in provider.discover() if t.state() == ONLINE]
        return online

    def test_discover_and_select_find_the_device(self, provider, target):
        assert isinstance(target, Target) and target.provider_name
        [selected] = provider.select(target.serial)
        assert selected.serial == target.serial and selected.state() == ONLINE
        [missing] = provider.select("no-such-device")
        assert missing.state() == NOT_FOUND

    def test_identity_is_the_devices_own_and_stable(self, target):
        assert target.identity() == target.identity() == target.info().props["ro.serialno"]

    def test_info_says_what_the_device_is(self, target):
        info = target.info()
        assert info.abi and info.model and info.sdk and info.state == ONLINE

    def test_run_gives_output_and_status(self, target):
        result = target.shell("echo hello; echo oops >&2; exit 3", timeout_s=10)
        assert (result.stdout, result.stderr, result.status) == ("hello\n", "oops\n", 3)

    def test_run_stops_at_its_deadline_and_when_cancelled(self, target):
        with pytest.raises(CommandTimeout):
            target.shell("sleep 30", timeout_s=0.5)
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        with pytest.raises(Cancelled):
            target.shell("sleep 30", timeout_s=20, cancel=cancel)
        assert target.shell("echo still here", timeout_s=10).stdout == "still here\n"

    def test_prepare_files_sends_only_what_changed(self, target, tmp_path):
        local = tmp_path / "model.tflite"
        local.write_bytes(b"\x01" * 100_000)
        file = TargetFile(local, f"{REMOTE_DIR}/model.tflite",
                          hashlib.sha256(local.read_bytes()).hexdigest())
        heard = []
        target.shell(f"rm -rf {REMOTE_DIR}", timeout_s=10)
        assert target.prepare_files([file], progress=heard.append) == 100_000
        assert heard[-1] == 100_000
        assert target.prepare_files([file]) == 0  # the device has this content already
        sha = target.shell(f"sha256sum {file.remote}", timeout_s=10).stdout.split()[0]
        assert sha == file.sha256

    def test_read_file_gives_a_files_bytes_or_none(self, target, tmp_path):
        local = tmp_path / "out.bin"
        content = bytes(range(256)) * 300  # binary, with every byte value, over one sync chunk
        local.write_bytes(content)
        file = TargetFile(local, f"{REMOTE_DIR}/sub/out.bin", hashlib.sha256(content).hexdigest())
        target.send_files([file])
        assert target.read_file(file.remote, len(content)) == content
        assert target.read_file(file.remote, 1000) == content[:1001]  # cut past what was wanted
        assert target.read_file(f"{REMOTE_DIR}/no-such-file", 10) is None

    def test_telemetry_reads_battery_and_temperatures(self, target):
        snapshot = target.telemetry()
        assert snapshot.battery_pct is not None and snapshot.max_temp_c is not None

    def test_recover_returns_at_once_for_an_online_device(self, target):
        target.recover(deadline_s=5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("target-contract-lab")
    state = lab_up(1, base)
    yield state
    lab_down(base)  # ends the lab's adb server and device by pid


class TestAdbProvider(TargetContract):
    @pytest.fixture
    def provider(self, lab):
        clear_faults(Path(lab.devices[0].state_dir))
        return AdbProvider(servers=[lab.server])
