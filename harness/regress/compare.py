"""Compare two runs key by key and give each key a verdict a nightly job can act on.

A key is everything that changes latency apart from the code under test: model variant, device,
adb server, delegate, threads, CPU mask, OS build and benchmark_model binary. A key's samples are
one figure per timing launch, of the one per-launch statistic (harness.results.statistic: the
launch minimum unless `Thresholds.statistic` says otherwise).

Where the candidate run launched the baseline's artifact beside its own (`bench run --baseline`,
harness.benchmark.pairing), the key is judged by those pairs (harness.regress.pairs: mode
"paired"); else by the two runs' samples (mode "cross-run", below).

Cross-run verdicts (latency): INVALID when a validity gate fails; REGRESSED/IMPROVED only when a
one-sided rank test, the size of the change and a bootstrap CI of the median ratio all agree;
SAME when the CI lies inside the threshold band; UNKNOWN otherwise, with how many more trials
would settle it. Size and accuracy are compared per variant from the artifacts' metadata.
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Callable

import numpy as np

from harness.config import HygieneSettings
from harness.errors import UserError
from harness.results.schema import Measurement, MeasurementStatus
from harness.results.statistic import DEFAULT_STATISTIC, STATISTICS, launch_value_us  # noqa: F401


class Verdict(str, Enum):
    """A key's or metric's verdict; a str Enum, so JSON, JUnit and compare.md show the plain
    name and callers may compare with the strings."""

    REGRESSED = "REGRESSED"
    IMPROVED = "IMPROVED"
    SAME = "SAME"
    UNKNOWN = "UNKNOWN"
    INVALID = "INVALID"

    def __str__(self) -> str:
        return self.value


# The names callers import.
REGRESSED, IMPROVED, SAME = Verdict.REGRESSED, Verdict.IMPROVED, Verdict.SAME
UNKNOWN, INVALID = Verdict.UNKNOWN, Verdict.INVALID
VERDICTS = (REGRESSED, INVALID, UNKNOWN, IMPROVED, SAME)  # display order: worst first
MIN_SAMPLES = 3


# -- keys and samples ----------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class SeriesKey:
    """What must be equal for two samples to be comparable."""

    model_name: str
    variant: str
    device_serial: str  # the device's stable identity (Measurement.device_id), not its adb serial
    adb_server: str
    delegate_choice: str
    num_threads: str
    cpu_mask: str
    os_build: str
    binary_sha256: str

    @property
    def label(self) -> str:
        # One string per key, for tables and for the per-key threshold patterns (`*gpu*=1.10`).
        return (f"{self.model_name}:{self.variant}@{self.device_serial}"
                f" server={self.adb_server} delegate={self.delegate_choice}"
                f" threads={self.num_threads} mask={self.cpu_mask} os={self.os_build}"
                f" bin={self.binary_sha256[:12]}")


def os_build(device_props_json: str | None) -> str:
    """The OS build a sample ran on: the build fingerprint, else the incremental version."""
    props = json.loads(device_props_json or "{}")
    return (props.get("ro.build.fingerprint") or props.get("ro.build.version.incremental")
            or "unknown")


def series_key(m: Measurement) -> SeriesKey:
    return SeriesKey(
        model_name=m.model_name or "?", variant=m.variant,
        device_serial=m.device_id or m.device_serial,  # samples stored before ids: adb serial
        adb_server=m.adb_server, delegate_choice=m.delegate_choice or "default",
        num_threads=str(m.num_threads) if m.num_threads is not None else "default",
        cpu_mask=m.cpu_mask or "none", os_build=os_build(m.device_props_json),
        binary_sha256=m.binary_sha256 or "?")


@dataclass
class KeySamples:
    """A key's timing samples in one run, and what the validity gates need to know about them."""

    values_us: list[float] = field(default_factory=list)  # per-launch means of the ok launches
    invalid: int = 0                   # launches the run itself marked invalid
    throttled: int = 0                 # launches that started above the thermal-status limit
    low_battery: int = 0               # launches that started on a low battery, not charging


# The per-launch figure a key's samples are made of (`--statistic`; by default the one
# statistic of report and history, harness.results.statistic).
sample_value = launch_value_us


def group_samples(measurements: list[Measurement], thresholds: "Thresholds | None" = None
                  ) -> dict[SeriesKey, KeySamples]:
    thresholds = thresholds or Thresholds()
    groups: dict[SeriesKey, KeySamples] = {}
    for m in measurements:
        if m.kind != "timing":
            continue
        if m.status == MeasurementStatus.INVALID:
            groups.setdefault(series_key(m), KeySamples()).invalid += 1
            continue
        value = sample_value(m, thresholds.statistic)
        if m.status != MeasurementStatus.OK or value is None:
            continue  # failed / retried / skipped launches are not samples
        samples = groups.setdefault(series_key(m), KeySamples())
        samples.values_us.append(value)
        telemetry = json.loads(m.telemetry_before_json or "{}")
        status = telemetry.get("thermal_status")
        if status is not None and status > thresholds.max_thermal_status:
            samples.throttled += 1
        battery = telemetry.get("battery_pct", m.battery_pct)
        if (battery is not None and battery < thresholds.min_battery_pct
                and telemetry.get("charging") is not True):
            samples.low_battery += 1
    return groups


# -- thresholds ----------------------------------------------------------------------------------
# A sample counts when its device was as fit as a run demands before launching (the same
# thresholds as harness.targets.hygiene, defined once in HygieneSettings).
_HYGIENE = HygieneSettings()


@dataclass
class Thresholds:
    ratio: float = 1.05                 # median cand/base that counts as a real slowdown
    overrides: list[tuple[str, float]] = field(default_factory=list)  # (glob over key label, ratio)
    alpha: float = 0.01                 # one-sided p-value bound
    max_cv: float = 0.10                # validity gate: stdev/mean of a key's samples
    max_spread: float = 3.0             # validity gate: max/min of a key's samples
    max_thermal_status: int = _HYGIENE.max_thermal_status  # above it the SoC is slowed
    min_battery_pct: int = _HYGIENE.min_battery_pct
    size_tolerance: float = 0.01        # relative .tflite size increase that is a regression
    accuracy_drop_points: float = 0.5   # top-1 drop, in percentage points, that is a regression
    bootstrap_resamples: int = 2000
    seed: int = 0                       # bootstrap resampling is seeded: same data, same verdict
    statistic: str = DEFAULT_STATISTIC  # which per-launch figure is a sample (STATISTICS)

    def ratio_for(self, label: str) -> float:
        """The first override whose pattern matches the key label, else the default ratio."""
        for pattern, ratio in self.overrides:
            if fnmatch.fnmatchcase(label, pattern):
                return ratio
        return self.ratio


def parse_threshold(text: str, thresholds: Thresholds) -> None:
    """`1.08` sets the default ratio; `PATTERN=RATIO` (e.g. `*gpu*=1.10`) adds an override."""
    pattern, sep, value = text.rpartition("=")
    try:
        ratio = float(value)
    except ValueError:
        raise UserError(f"--threshold {text}: expected RATIO or PATTERN=RATIO, "
                        "e.g. 1.05 or '*gpu*=1.10'") from None
    if not ratio > 1.0:
        raise UserError(f"--threshold {text}: the ratio must be above 1 (e.g. 1.05 for 5 %)")
    if sep:
        thresholds.overrides.append((pattern, ratio))
    else:
        thresholds.ratio = ratio


# -- statistics of one key ---------------------------------------------------------------------
@dataclass
class SampleStats:
    n: int
    median_us: float | None
    cv: float | None          # stdev (ddof=1) / mean
    spread: float | None      # max / min


def sample_stats(values_us: list[float]) -> SampleStats:
    if not values_us:
        return SampleStats(0, None, None, None)
    x = np.asarray(values_us, dtype=float)
    cv = float(np.std(x, ddof=1) / np.mean(x)) if len(x) > 1 else None
    spread = float(x.max() / x.min()) if x.min() > 0 else math.inf
    return SampleStats(len(x), float(np.median(x)), cv, spread)


@dataclass
class LatencyTest:
    """The numbers a latency verdict rests on."""

    ratio: float                  # median(cand) / median(base)
    ci_low: float                 # bootstrap 95 % CI of that ratio
    ci_high: float
    p_slower: float               # one-sided: cand slower than base (min of Mann-Whitney and KS)
    p_faster: float               # one-sided: cand faster than base


def latency_test(base_us, cand_us, thresholds: Thresholds) -> LatencyTest:
    from scipy import stats  # ~70 MB and 1 s to load: only where a verdict is computed

    base = np.asarray(base_us, dtype=float)
    cand = np.asarray(cand_us, dtype=float)
    # Mann-Whitney 'greater': cand's distribution is shifted above base's (slower).
    mw_slower = stats.mannwhitneyu(cand, base, alternative="greater").pvalue
    mw_faster = stats.mannwhitneyu(cand, base, alternative="less").pvalue
    # ks_2samp(x, y, 'less'): alternative is F_x(t) < F_y(t) for some t, i.e. x's CDF lies below
    # y's: x takes larger values. So ks_2samp(cand, base, 'less') tests "cand slower".
    ks_slower = stats.ks_2samp(cand, base, alternative="less").pvalue
    ks_faster = stats.ks_2samp(cand, base, alternative="greater").pvalue

    def median_ratio(c, b, axis=-1):
        return np.median(c, axis=axis) / np.median(b, axis=axis)

    ci = stats.bootstrap((cand, base), median_ratio, vectorized=True, paired=False,
                         n_resamples=thresholds.bootstrap_resamples, confidence_level=0.95,
                         method="percentile", rng=np.random.default_rng(thresholds.seed))
    return LatencyTest(ratio=float(median_ratio(cand, base)),
                       ci_low=float(ci.confidence_interval.low),
                       ci_high=float(ci.confidence_interval.high),
                       p_slower=float(min(mw_slower, ks_slower)),
                       p_faster=float(min(mw_faster, ks_faster)))


def more_trials_needed(test: LatencyTest, n: int, threshold: float) -> int | None:
    """How many more trials per side would likely settle an UNKNOWN key (None: it can't tell).

    The CI half-width shrinks like 1/sqrt(n); the half-width needed is the distance (in log
    ratio) from the estimate to the nearest edge that decides it: the threshold band's edge when
    the estimate is inside the band (-> SAME), else 1 (-> REGRESSED / IMPROVED)."""
    log_ratio = math.log(test.ratio)
    half_width = (math.log(test.ci_high) - math.log(test.ci_low)) / 2
    band = math.log(threshold)
    needed = band - abs(log_ratio) if abs(log_ratio) < band else abs(log_ratio)
    if needed <= 1e-9 or half_width <= 0:
        return None
    return max(1, math.ceil(n * (half_width / needed) ** 2) - n)


# -- verdicts -------------------------------------------------------------------------------------
@dataclass
class KeyVerdict:
    key: SeriesKey
    verdict: Verdict
    reason: str
    threshold: float
    base: SampleStats
    cand: SampleStats
    test: LatencyTest | None = None
    more_trials: int | None = None
    confirmation: str | None = None   # what `--confirm`'s interleaved re-run found (None: not run)
    mode: str = "cross-run"           # "paired": from baseline/candidate pairs of one session
    #                                   (harness.regress.pairs); "cross-run": two runs' samples
    pairs: int | None = None          # paired: the pairs the verdict rests on
    mde_ratio: float | None = None    # paired: the smallest slowdown those pairs catch with
    #                                   power 0.9 (what a SAME or UNKNOWN could not have seen)
    sigma_log: float | None = None    # paired: robust sigma of the pairs' log ratios

    @property
    def label(self) -> str:
        return self.key.label

    def to_dict(self) -> dict:
        data = asdict(self)
        data["label"] = self.label
        return data


def _gate_failures(side: str, samples: KeySamples, st: SampleStats, t: Thresholds) -> list[str]:
    reasons = []
    if samples.invalid:
        reasons.append(f"{side}: {samples.invalid} invalid launch(es)")
    if st.cv is not None and st.cv >= t.max_cv:
        reasons.append(f"{side}: CV {100 * st.cv:.1f} % >= {100 * t.max_cv:.0f} %")
    if st.spread is not None and st.spread > t.max_spread:
        reasons.append(f"{side}: max/min {st.spread:.2f} > {t.max_spread:g}")
    if samples.throttled:
        reasons.append(f"{side}: {samples.throttled} launch(es) throttled "
                       f"(thermal status > {t.max_thermal_status})")
    if samples.low_battery:
        reasons.append(f"{side}: {samples.low_battery} launch(es) on battery "
                       f"< {t.min_battery_pct} % and not charging")
    return reasons


def key_verdict(key: SeriesKey, base: KeySamples, cand: KeySamples,
                thresholds: Thresholds) -> KeyVerdict:
    threshold = thresholds.ratio_for(key.label)
    base_st, cand_st = sample_stats(base.values_us), sample_stats(cand.values_us)
    verdict = KeyVerdict(key, UNKNOWN, "", threshold, base_st, cand_st)
    gates = (_gate_failures("base", base, base_st, thresholds)
             + _gate_failures("cand", cand, cand_st, thresholds))
    if gates:
        verdict.verdict, verdict.reason = INVALID, "; ".join(gates)
        return verdict
    n = min(base_st.n, cand_st.n)
    if n < MIN_SAMPLES:
        verdict.reason = (f"too few samples (base {base_st.n}, cand {cand_st.n}; "
                          f"need >= {MIN_SAMPLES} each): run more --trials")
        verdict.more_trials = MIN_SAMPLES - n
        return verdict
    test = verdict.test = latency_test(base.values_us, cand.values_us, thresholds)
    ci = f"ratio {test.ratio:.3f} (95 % CI {test.ci_low:.3f}-{test.ci_high:.3f})"
    if test.p_slower <= thresholds.alpha and test.ratio >= threshold and test.ci_low > 1:
        verdict.verdict = REGRESSED
        verdict.reason = f"slower: {ci}, p={test.p_slower:.2g}, threshold {threshold:g}"
    elif test.p_faster <= thresholds.alpha and test.ratio <= 1 / threshold and test.ci_high < 1:
        verdict.verdict = IMPROVED
        verdict.reason = f"faster: {ci}, p={test.p_faster:.2g}, threshold {threshold:g}"
    elif test.ci_low >= 1 / threshold and test.ci_high <= threshold:
        verdict.verdict = SAME
        verdict.reason = f"within ±{100 * (threshold - 1):.0f} %: {ci}"
    else:
        verdict.more_trials = more_trials_needed(test, n, threshold)
        more = (f"~{verdict.more_trials} more trials per run would likely settle it"
                if verdict.more_trials else "the estimate sits on the threshold")
        verdict.reason = f"not conclusive: {ci}, p={min(test.p_slower, test.p_faster):.2g}; {more}"
    return verdict


@dataclass
class MetricVerdict:
    """Size or accuracy of one variant (model_name:variant)."""

    metric: str          # "size" | "accuracy"
    variant: str
    verdict: Verdict
    reason: str
    base_value: float
    cand_value: float

    @property
    def label(self) -> str:
        return f"{self.metric} {self.variant}"

    def to_dict(self) -> dict:
        return asdict(self) | {"label": self.label}


def _variant_artifacts(store, measurements: list[Measurement]) -> dict[str, dict]:
    """model_name:variant -> artifact row (with metadata) for the artifacts a run measured."""
    # The run's own artifacts: not the baseline's launched beside them (paired, confirm), which
    # often have the same model and variant names.
    shas = sorted({m.artifact_sha256 for m in measurements
                   if m.artifact_sha256 and m.kind not in ("paired", "confirm")})
    return {f"{a['model_name']}:{a['variant']}": a for a in store.artifacts(shas)}


def size_verdict(variant: str, base_bytes: int, cand_bytes: int, t: Thresholds) -> MetricVerdict:
    change = cand_bytes / base_bytes - 1
    text = f"{base_bytes} -> {cand_bytes} bytes ({100 * change:+.2f} %)"
    verdict = (REGRESSED if change > t.size_tolerance
               else IMPROVED if change < -t.size_tolerance else SAME)
    return MetricVerdict("size", variant, verdict, text, base_bytes, cand_bytes)


def accuracy_verdict(variant: str, base_top1: float, cand_top1: float,
                     t: Thresholds) -> MetricVerdict:
    points = 100 * (cand_top1 - base_top1)  # top1 is a fraction; the bound is in points
    text = f"top-1 {100 * base_top1:.2f} % -> {100 * cand_top1:.2f} % ({points:+.2f} points)"
    verdict = (REGRESSED if points < -t.accuracy_drop_points
               else IMPROVED if points > t.accuracy_drop_points else SAME)
    return MetricVerdict("accuracy", variant, verdict, text, base_top1, cand_top1)


def on_device_verdicts(base: list[Measurement], cand: list[Measurement],
                       t: Thresholds) -> list[MetricVerdict]:
    """Per key present in both runs: accuracy on the device (`--accuracy-on-device`: top-1
    against the labels, else agreement with the baseline) and delegated node coverage (what
    share of the graph the delegate took: a new build that falls back to the CPU for some ops
    computes the same but not where it should)."""
    verdicts = []
    base_acc, cand_acc = _accuracy_by_key(base), _accuracy_by_key(cand)
    for key in sorted(set(base_acc) & set(cand_acc)):
        b, c = base_acc[key], cand_acc[key]
        if b.accuracy_samples != c.accuracy_samples:
            continue  # other samples, or some failed: not the same question asked twice
        field_name = next((f for f in ("device_top1", "baseline_agreement")
                           if getattr(b, f) is not None and getattr(c, f) is not None), None)
        if field_name is None:
            continue
        verdict = accuracy_verdict(key.label, getattr(b, field_name), getattr(c, field_name), t)
        verdict.metric = "device accuracy"
        if field_name == "baseline_agreement":
            verdict.reason = "agreement with the baseline, " + verdict.reason.replace("top-1 ", "")
        verdicts.append(verdict)
    base_cov, cand_cov = _coverage_by_key(base), _coverage_by_key(cand)
    for key in sorted(set(base_cov) & set(cand_cov)):
        (b_nodes, b_total), (c_nodes, c_total) = base_cov[key], cand_cov[key]
        if b_total != c_total:
            continue  # another graph (a changed model): its coverage is not comparable
        b_share, c_share = b_nodes / b_total, c_nodes / c_total
        verdict = (REGRESSED if c_share < b_share else IMPROVED if c_share > b_share else SAME)
        verdicts.append(MetricVerdict(
            "delegated nodes", key.label, verdict,
            f"{b_nodes}/{b_total} -> {c_nodes}/{c_total} nodes on the delegate", b_share, c_share))
    return verdicts


def _accuracy_by_key(measurements: list[Measurement]) -> dict[SeriesKey, Measurement]:
    """Each key's last accuracy record in which every sample was judged."""
    found = {}
    for m in measurements:
        if (m.kind == "accuracy" and m.status == MeasurementStatus.OK and m.accuracy_samples
                and not m.accuracy_samples_failed):
            found[series_key(m)] = m
    return found


def _coverage_by_key(measurements: list[Measurement]) -> dict[SeriesKey, tuple[int, int]]:
    found = {}
    for m in measurements:
        if (m.kind == "timing" and m.status == MeasurementStatus.OK and m.nodes_total
                and m.nodes_delegated is not None):
            found[series_key(m)] = (int(m.nodes_delegated), int(m.nodes_total))
    return found


# -- the comparison -------------------------------------------------------------------------------
@dataclass
class CompareResult:
    base_run: str
    cand_run: str
    thresholds: Thresholds
    latency: list[KeyVerdict] = field(default_factory=list)
    size: list[MetricVerdict] = field(default_factory=list)
    accuracy: list[MetricVerdict] = field(default_factory=list)
    on_device: list[MetricVerdict] = field(default_factory=list)  # device accuracy, delegation
    only_in_base: list[str] = field(default_factory=list)   # key labels without a partner
    only_in_cand: list[str] = field(default_factory=list)

    @property
    def verdicts(self) -> list:
        return [*self.latency, *self.size, *self.accuracy, *self.on_device]

    @property
    def metrics(self) -> list[MetricVerdict]:
        return [*self.size, *self.accuracy, *self.on_device]

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for x in self.verdicts if x.verdict == v) for v in VERDICTS}

    @property
    def regressed(self) -> bool:
        return any(v.verdict == REGRESSED for v in self.verdicts)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressed else 0

    def to_dict(self) -> dict:
        return {"base_run": self.base_run, "cand_run": self.cand_run,
                "thresholds": asdict(self.thresholds), "counts": self.counts(),
                "regressed": self.regressed,
                "latency": [v.to_dict() for v in self.latency],
                "size": [v.to_dict() for v in self.size],
                "accuracy": [v.to_dict() for v in self.accuracy],
                "on_device": [v.to_dict() for v in self.on_device],
                "only_in_base": self.only_in_base, "only_in_cand": self.only_in_cand}


def compare_samples(base_run: str, cand_run: str, base: list[Measurement],
                    cand: list[Measurement], thresholds: Thresholds | None = None,
                    paired: bool = True) -> CompareResult:
    """Latency verdicts for every key present in both sets of measurements (no store needed):
    paired where the candidate run launched the baseline's artifact beside its own (and
    `paired`), else across the two runs."""
    from harness.benchmark.pairing import timed_artifact_shas
    from harness.regress.pairs import paired_key_verdict, run_pairs

    thresholds = thresholds or Thresholds()
    pairs = run_pairs(cand, timed_artifact_shas(base)) if paired else {}
    base_groups = group_samples(base, thresholds)
    cand_groups = group_samples(cand, thresholds)
    common = set(base_groups) & set(cand_groups) - set(pairs)
    result = CompareResult(base_run, cand_run, thresholds)
    result.latency = sorted(
        [paired_key_verdict(k, *pairs[k], thresholds) for k in pairs]
        + [key_verdict(k, base_groups[k], cand_groups[k], thresholds) for k in common],
        key=lambda v: v.key)
    result.only_in_base = sorted(k.label for k in set(base_groups) - set(cand_groups) - set(pairs))
    result.only_in_cand = sorted(k.label for k in set(cand_groups) - set(base_groups) - set(pairs))
    result.on_device = on_device_verdicts(base, cand, thresholds)
    return result


def compare(store, base_run: str, cand_run: str,
            thresholds: Thresholds | None = None, paired: bool = True) -> CompareResult:
    """Verdicts for every key present in both runs (paired where the candidate run launched
    the baseline's artifacts beside its own, unless `paired` is False), plus size and accuracy
    per variant."""
    for role, run_id in (("base", base_run), ("candidate", cand_run)):
        if store.run(run_id) is None:
            known = [r["run_id"] for r in store.runs()][-5:]
            raise UserError(f"{role} run {run_id}: not in {store.path}; "
                            f"recent runs: {', '.join(known) or 'none'}")
    base, cand = store.measurements(base_run), store.measurements(cand_run)
    result = compare_samples(base_run, cand_run, base, cand, thresholds, paired)
    if not result.latency:
        raise UserError(f"runs {base_run} and {cand_run} have no key in common (same model "
                        "variant, device, delegate, threads, CPU mask, OS build and binary)")
    t = result.thresholds
    base_art, cand_art = _variant_artifacts(store, base), _variant_artifacts(store, cand)
    for variant in sorted(set(base_art) & set(cand_art)):
        b, c = base_art[variant], cand_art[variant]
        if b.get("size_bytes") and c.get("size_bytes"):
            result.size.append(size_verdict(variant, b["size_bytes"], c["size_bytes"], t))
        b_top1 = (b["metadata"].get("accuracy") or {}).get("top1")
        c_top1 = (c["metadata"].get("accuracy") or {}).get("top1")
        if b_top1 is not None and c_top1 is not None:
            result.accuracy.append(accuracy_verdict(variant, b_top1, c_top1, t))
    return result


def resolve_run_ref(store, ref: str, exclude: str | None = None,
                    log: Callable[[str], None] | None = None) -> str:
    """A run id, `latest` or `tag:NAME`. `latest` is the newest run (other than `exclude`)
    that finished ok with ok samples, never a running, interrupted or failed one; `log` is
    told which run that is."""
    if ref == "latest":
        run_id = store.latest_run_id(exclude=exclude)
        if run_id is None:
            others = ", ".join(f"{n} {status}" for status, n in
                               sorted(store.run_counts_by_status().items()))
            raise UserError(f"latest: no run in {store.path} finished ok"
                            + (f" other than {exclude}" if exclude else "")
                            + (f" (runs there: {others})" if others else "")
                            + "; give a run id or tag:NAME")
        if log is not None:
            run = store.run(run_id)
            log(f"latest: run {run_id} (started {run['started_at']}, finished "
                f"{run['finished_at']}, {run['status']})")
        return run_id
    if ref.startswith("tag:"):
        run_id = store.run_for_tag(ref[4:])
        if run_id is None:
            raise UserError(f"{ref}: no such tag in {store.path}; tag a run with "
                            "`bench tag RUN_ID NAME`")
        return run_id
    return ref
