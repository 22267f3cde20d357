"""The job plan of a paired run (harness.benchmark.pairing): the baseline's artifact beside each
timing launch, in a seeded random order, and what is left unpaired and why."""
from pathlib import Path

from harness.benchmark.jobs import plan_jobs
from harness.benchmark.pairing import interleave_pairs, plan_paired_baseline
from harness.optimize.artifacts import Artifact, sha256_file
from harness.results.schema import Measurement
from harness.results.store import Store


def test_each_timing_launch_gets_its_baseline_beside_it_in_a_seeded_order():
    jobs = plan_jobs(2, trials=20, peak_memory=True)
    paired = interleave_pairs(jobs, {0: 2}, seed=0)  # variant 0 paired with artifact 2, 1 not
    assert interleave_pairs(jobs, {0: 2}, seed=0) == paired  # a resumed run plans the same
    assert interleave_pairs(jobs, {0: 2}, seed=1) != paired
    base = [j for j in paired if j.kind == "paired"]
    assert len(base) == 20 and {(j.artifact_index, j.role) for j in base} == {(2, "base")}
    firsts = []
    for i, job in enumerate(paired):
        if job.kind == "paired":  # beside the candidate's launch of the same trial
            neighbours = paired[max(0, i - 1):i] + paired[i + 1:i + 2]
            partner = [n for n in neighbours if n.kind == "timing" and n.artifact_index == 0
                       and n.trial == job.trial]
            assert partner, (i, job)
            firsts.append(paired.index(partner[0]) > i)
    assert 5 < sum(firsts) < 15  # sometimes the baseline first, sometimes the candidate
    # nothing else moved: the unpaired variant and the peak-memory launches are all there
    assert [j for j in paired if j.kind != "paired"] == jobs


def test_a_variant_is_left_unpaired_when_its_baseline_artifact_is_gone(tmp_path):
    store = Store(tmp_path / "b.db")
    model = tmp_path / "built" / "m.tflite"
    model.parent.mkdir()
    model.write_bytes(b"TFL3 baseline bytes")
    sha = sha256_file(model)
    store.start_run("base", "2026-12-01T00:00:00Z", "0", "host", {})
    store.record_artifact(sha, "m-baseline", "m", "baseline", model.stat().st_size, {}, str(model))
    for variant, artifact_sha in (("baseline", sha), ("int8", "f" * 64)):
        store.add_measurement(Measurement(run_id="base", device_serial="x", adb_server="s",
                                          model_name="m", variant=variant, status="ok",
                                          kind="timing", trial=0, artifact_sha256=artifact_sha,
                                          inference_avg_us=1000.0))
    candidates = [Artifact("m-baseline", "m", "baseline", tmp_path / "c1.tflite", "a" * 64, 1),
                  Artifact("m-int8", "m", "int8", tmp_path / "c2.tflite", "b" * 64, 1),
                  Artifact("m-fp16", "m", "fp16", tmp_path / "c3.tflite", "c" * 64, 1)]
    staging = tmp_path / "staging"
    staging.mkdir()
    plan = plan_paired_baseline(store, "base", candidates, staging, tmp_path / "no-cache")
    assert plan.partner == {0: 3}  # after the run's own three artifacts
    [staged] = plan.artifacts
    assert staged.sha256 == sha and staged.path.parent == staging
    assert staged.path.name.startswith(sha[:12]) and staged.path.resolve() == model.resolve()
    assert "not on this host" in plan.not_paired["int8"]
    assert "did not time this variant" in plan.not_paired["fp16"]
    # a file that changed since is not the artifact
    model.write_bytes(b"TFL3 changed")
    again = plan_paired_baseline(store, "base", candidates, tmp_path, tmp_path / "no-cache")
    assert again.partner == {} and "not on this host" in again.not_paired["baseline"]
    store.close()
