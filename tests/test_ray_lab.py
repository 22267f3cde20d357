"""Issue 11, part 2: a lab of many hosts on a real Ray cluster of two nodes on this machine.

Each node is a separate raylet that joined with `join_lab` (what `bench lab join` runs), as a
lab host of its own, with its own adb server and virtual devices; the controller runs the same
`run_benchmarks` as on one host with `cluster` set. No mocks: real Ray, real adb servers, real
virtual devices, real LiteRT. The cluster lives in a network namespace with only loopback
(tests/ray_cluster.py), so nothing it opens faces a network.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_cluster import (NODE_ARGS, can_make_network_namespace,  # before Ray: RAY_ENV
                               loopback_only_network, ray_head)

pytest.importorskip("ray")

from device_agents.host_agent.join import join_lab  # noqa: E402
from harness.config import HygieneSettings, RunConfig  # noqa: E402
from harness.targets.adb.virtual_lab import lab_down, lab_up  # noqa: E402
from harness.run import run_benchmarks  # noqa: E402
from harness.targets.base import ONLINE  # noqa: E402
from harness.targets.cluster import RayProvider  # noqa: E402
from tests.test_target_contract import TargetContract  # noqa: E402
from tests.virtual_lab_fixtures import FAST_BENCHMARK, free_port, wait_until  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(can_make_network_namespace() is not None,
                                 reason=str(can_make_network_namespace()))]

HOSTS = {"hosta": "LABA", "hostb": "LABB"}
DEVICES_PER_HOST = 2
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two lab hosts of two devices each, joined to one Ray head; all ended by pid after."""
    base = tmp_path_factory.mktemp("ray-lab")
    with loopback_only_network(), ray_head(free_port()) as cluster:
        labs = {}
        try:
            for host, prefix in HOSTS.items():
                labs[host] = lab_up(DEVICES_PER_HOST, base / host, own_cpus=False,
                                    serial_prefix=prefix)
                join_lab(cluster.address, host, [labs[host].server], NODE_ARGS,
                         staging_dir=base / host / "shipped")
            yield cluster, labs, base
        finally:
            for host in labs:
                lab_down(base / host)


def config_for(tmp_path, cluster, **kw) -> RunConfig:
    kw.setdefault("variants", ["baseline"])
    return RunConfig(cluster=cluster.address, devices="all", store_path=tmp_path / "bench.db",
                     reports_dir=tmp_path / "reports", benchmark=FAST_BENCHMARK,
                     peak_memory=False, hygiene=HygieneSettings(cooldown_poll_s=0.2), **kw)


def rows(store_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(store_path) as db:
        return db.execute(sql).fetchall()


def agent_where(host: str) -> dict:
    import ray

    return ray.get(ray.get_actor(f"bench-agent:{host}", namespace="bench").where.remote(),
                   timeout=120)


class TestRayProvider(TargetContract):
    """The target contract on a device actor of a lab host (harness.targets.cluster)."""

    @pytest.fixture
    def provider(self, lab):
        cluster, _labs, _base = lab
        return RayProvider(cluster.address)

    @pytest.fixture
    def target(self, provider):
        online = [t for t in provider.discover() if t.host == "hosta" and t.state() == ONLINE]
        return sorted(online, key=lambda t: t.serial)[0]

    def test_a_crashed_device_actor_is_restarted_by_ray(self, target):
        import ray

        actor = ray.get_actor(target.actor_name, namespace="bench")
        pid = ray.get(actor.pid.remote())
        os.kill(pid, 9)
        target.recover(deadline_s=60)  # waits out the restart
        assert target.shell("echo back", timeout_s=10).stdout == "back\n"
        assert ray.get(actor.pid.remote()) != pid


def test_a_run_measures_every_device_on_its_own_host(lab, tmp_path):
    cluster, labs, _base = lab
    result = run_benchmarks(config_for(tmp_path, cluster))
    assert result.exit_code == 0, [(m.device_id, m.status, m.error) for m in result.measurements]
    ran = {(m.device_id, m.lab_host, m.status) for m in result.measurements}
    assert ran == {(f"{prefix}{i:04d}", host, "ok") for host, prefix in HOSTS.items()
                   for i in range(1, DEVICES_PER_HOST + 1)}
    # The store says which node ran which job.
    assert {r[0][:4]: r[1] for r in rows(tmp_path / "bench.db",
                                         "SELECT device_id, lab_host FROM measurements")} \
        == {"LABA": "hosta", "LABB": "hostb"}
    # Each file went once to each host through the object store, and each device got it from
    # its own host's adb server: the files are in its sandbox.
    for host, state in labs.items():
        where = agent_where(host)
        assert where["adb_servers"] == [state.server.address]
        assert result.artifacts[0].sha256 in where["staged"]
        assert set(where["staged"].values()) == {1}  # each file written once on the host
        for device in state.devices:
            pushed = Path(device.state_dir) / "fs" / "data" / "local" / "tmp" / "bench"
            assert {p.name for p in pushed.iterdir()} >= {"benchmark_model",
                                                           f"{result.artifacts[0].path.name}"}


def test_a_host_lost_mid_run_loses_only_its_jobs_and_the_run_resumes(lab, tmp_path):
    cluster, labs, base = lab
    config = config_for(tmp_path, cluster)
    settings = tmp_path / "bench.toml"  # a lost host is given up on after 3 s, not 60
    settings.write_text("[run]\ndevice_wait_s = 3\n")
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--config", str(settings),
         "--cluster", cluster.address, "--devices",
         "all", "--variant", "baseline", "--trials", "4", "--no-peak-memory", "--retry-on-sibling",
         "--num-runs", "3", "--warmup-runs", "1", "--store", str(config.store_path),
         "--reports-dir", str(config.reports_dir), "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def hostb_measured():
            try:
                return rows(config.store_path, "SELECT count(*) FROM measurements WHERE "
                                               "lab_host='hostb' AND status='ok'")[0][0] >= 1
            except sqlite3.Error:
                return False

        assert wait_until(hostb_measured, 300, poll_s=0.2), run.stderr.read()
        assert cluster.kill_node("hostb")
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, err
    final = rows(config.store_path, "SELECT device_id, lab_host, status FROM measurements "
                                    "WHERE status != 'retried' AND role IS NULL")
    assert {s for d, h, s in final if h == "hosta"} == {"ok"}
    assert len([1 for d, h, s in final if h == "hosta"]) == 4 * DEVICES_PER_HOST
    assert "lost" in {s for d, h, s in final if h == "hostb"}
    assert "lost with lab host hostb; once back: bench run --resume" in out
    # --retry-on-sibling: each lost job ran again on a phone of the same model on hosta.
    lost = rows(config.store_path, "SELECT device_id, trial FROM measurements "
                                   "WHERE status = 'lost'")
    retried = rows(config.store_path, "SELECT role, trial, lab_host, status FROM measurements "
                                      "WHERE role LIKE 'for %'")
    assert sorted((f"for {d}", t, "hosta", "ok") for d, t in lost) == sorted(retried)
    [(run_id,)] = rows(config.store_path, "SELECT run_id FROM runs")

    # The host comes back; --resume measures only what was lost.
    join_lab(cluster.address, "hostb", [labs["hostb"].server], NODE_ARGS,
             staging_dir=base / "hostb" / "shipped")
    resumed = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--resume", run_id, "--store",
         str(config.store_path), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    per_job = rows(config.store_path, "SELECT job_key, status FROM measurements "
                                      "WHERE status != 'retried' AND role IS NULL ORDER BY id")
    last = dict(per_job)
    assert len(last) == 4 * DEVICES_PER_HOST * len(HOSTS)
    assert set(last.values()) == {"ok"}
    assert sum(status == "ok" for _key, status in per_job) == len(last)  # none measured twice


def test_without_a_cluster_ray_is_not_imported():
    code = ("import sys, harness.cli, harness.run, harness.benchmark.runner, "
            "harness.targets.adb.provider; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
