"""Both benchmark_model flavours on real virtual labs (`bench lab up --flavour tflite|litert`):
bench learns each binary's flavour from its --help, speaks its flags, never passes one it lacks,
and stores comparable figures for the same model from either tool."""
from pathlib import Path

import pytest

from harness.benchmark.tool import PROBE_DIR
from harness.config import HygieneSettings, LabConfig, LabServer, RunConfig
from harness.paths import state_dir
from harness.results.store import Store
from harness.run import run_benchmarks
from harness.targets.adb.virtual_lab import LabState, lab_down, lab_up
from tests.virtual_lab_fixtures import FAST_BENCHMARK

pytestmark = pytest.mark.slow

# What both tools print (classic: `Inference timings in us:`, `Memory footprint delta`, the
# `count=` lines; LiteRT: its BENCHMARK RESULTS block and the same `count=` lines).
SHARED_FIGURES = ("init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us",
                  "inference_std_us", "inference_min_us", "inference_max_us", "inference_count",
                  "inference_p50_us", "memory_init_mb", "memory_overall_mb")


def _run(tmp_path: Path, flavour: str, model: Path, **kw):
    base = tmp_path / f"lab-{flavour}"
    lab_up(1, base, flavour=flavour)
    try:
        lab = LabState.load(base)
        config = RunConfig(model=str(model), variants=["baseline"], benchmark=FAST_BENCHMARK,
                           store_path=tmp_path / f"{flavour}.db",
                           reports_dir=tmp_path / f"reports-{flavour}",
                           hygiene=HygieneSettings(cooldown_poll_s=0.2),
                           lab=LabConfig(servers=[LabServer("virtual-lab", "127.0.0.1",
                                                            lab.adb_port)]), **kw)
        result = run_benchmarks(config)
        store = Store(config.store_path)
        ops = {row[0]: store.op_profile(row[0]) for row in store._conn.execute(
            "SELECT id FROM measurements WHERE kind='op_profile' AND status='ok'")}
        return result, store.measurements(result.run_id), ops
    finally:
        lab_down(base)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("flavours")
    # The virtual device has no NNAPI: the classic tool's --use_nnapi=true fails there as on a
    # phone without the library, so only LiteRT's run asks for it (to find it unavailable).
    delegates = {"tflite": ["xnnpack", "cpu", "npu"], "litert": ["xnnpack", "cpu", "nnapi", "npu"]}
    return {flavour: _run(tmp, flavour, tiny_model, delegates=delegates[flavour],
                          op_profiling=True)
            for flavour in ("tflite", "litert")}


def test_each_flavour_is_learnt_and_stored(runs):
    for flavour, (result, stored, _ops) in runs.items():
        assert result.exit_code == 0, [(m.delegate_choice, m.status, m.error) for m in stored]
        assert {m.tool_flavour for m in stored} == {flavour}
        assert {m.tool_version for m in stored} == {"bench-virtual 0.1.0"}
        assert all(m.binary_sha256 for m in stored)
    # The probe is cached per binary hash and device.
    probes = list((state_dir() / PROBE_DIR).glob("*/*.json"))
    assert len({p.parent.name for p in probes}) >= 2


def test_a_flag_the_binary_lacks_is_never_passed(runs):
    for flavour, (_result, stored, _ops) in runs.items():
        by_delegate = {}
        for m in stored:
            by_delegate.setdefault(m.delegate_choice, []).append(m)
        unavailable = {d for d, ms in by_delegate.items() if {m.status for m in ms} == {"unavailable"}}
        if flavour == "tflite":
            assert unavailable == {"npu"}
            assert {m.status for m in by_delegate["cpu"]} == {"ok"}  # --use_xnnpack=false
        else:
            assert unavailable == {"cpu", "nnapi"}
            assert {m.status for m in by_delegate["npu"]} == {"ok"}  # LiteRT falls back to CPU
            assert all("--use_xnnpack" not in (m.command or "") for m in stored)
        for m in stored:
            if m.status == "unavailable":
                assert m.command is None and m.failure_kind == "unavailable" and m.error


def test_both_flavours_store_the_same_figures_for_the_same_model(runs):
    filled = {}
    for flavour, (_result, stored, _ops) in runs.items():
        timing = [m for m in stored if m.kind == "timing" and m.status == "ok"
                  and m.delegate_choice == "xnnpack"]
        assert timing, flavour
        filled[flavour] = {name for name in SHARED_FIGURES
                           if all(getattr(m, name) is not None for m in timing)}
        peak = [m for m in stored if m.kind == "peak_memory" and m.status == "ok"
                and m.delegate_choice == "xnnpack"]
        assert peak and all(m.peak_memory_mb > 0 for m in peak), flavour
        commands = " ".join(m.command for m in timing)
        assert ("--use_cpu=true" if flavour == "litert" else "--use_xnnpack=true") in commands
    assert filled["tflite"] == filled["litert"] == set(SHARED_FIGURES)
    tflite = next(m for m in runs["tflite"][1] if m.kind == "timing" and m.status == "ok")
    litert = next(m for m in runs["litert"][1] if m.kind == "timing" and m.status == "ok")
    assert tflite.artifact_sha256 == litert.artifact_sha256  # the same file, both tools


def test_op_profiles_of_both_flavours_are_stored_per_op(runs):
    """Classic: --enable_op_profiling=true; LiteRT: --use_profiler=true and its own summary."""
    for flavour, (_result, stored, ops) in runs.items():
        profiled = [m for m in stored if m.kind == "op_profile" and m.status == "ok"]
        assert profiled and ops, flavour
        flag = "--use_profiler=true" if flavour == "litert" else "--enable_op_profiling=true"
        assert all(m.command.endswith(flag) for m in profiled)
        for rows in ops.values():
            assert {"CONV_2D", "FULLY_CONNECTED"} <= {row["node_type"] for row in rows}
            assert all(row["avg_ms"] is not None for row in rows)
            if flavour == "litert":
                assert all(row["name"].startswith("[Builtin]:") for row in rows)


@pytest.mark.parametrize("program, foreign", [("main", "--use_npu=true"),
                                               ("litert_main", "--use_xnnpack=true")])
def test_each_tool_warns_about_the_other_flavours_flag_and_runs_on(program, foreign, tiny_model):
    """As both real tools do (tflite/tools/command_line_flags.cc): an unknown flag is only
    warned about, and the launch measures without it."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", f"device_agents.benchmark_model.{program}",
                          f"--graph={tiny_model}", "--num_runs=2", "--min_secs=0.01",
                          "--warmup_min_secs=0.01", foreign], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"WARN: Unconsumed cmdline flags: {foreign}" in out.stdout
    assert "count=" in out.stdout
