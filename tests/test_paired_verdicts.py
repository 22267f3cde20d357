"""The paired A/B statistics (harness.regress.paired) on simulated nights with a known truth:
launch noise like the virtual lab's (CV 7 %), plus a drift that moves both sides of a pair and
differs from night to night, which the pairing must cancel."""
import math

import numpy as np
import pytest

from harness.regress.paired import (MIN_PAIRS, log_ratios, minimum_detectable_ratio,
                                    paired_decision, paired_test, pairs_for_power, robust_sigma)

LAUNCH_CV = 0.07
THRESHOLD = 1.05
NIGHTS = 300


def _night(rng, pairs: int, true_ratio: float):
    drift = np.exp(rng.normal(0, 0.15) + np.cumsum(rng.normal(0, 0.01, pairs)))  # heat, load
    base = 10_000 * drift * np.exp(rng.normal(0, LAUNCH_CV, pairs))
    cand = 10_000 * true_ratio * drift * np.exp(rng.normal(0, LAUNCH_CV, pairs))
    return base, cand


def _rate(true_ratio: float, pairs: int, verdict: str, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for night in range(NIGHTS):
        # The CI plays no part in REGRESSED: few resamples will do here.
        test = paired_test(*_night(rng, pairs, true_ratio), resamples=50, seed=night)
        hits += paired_decision(test, THRESHOLD)[0] == verdict
    return hits / NIGHTS


@pytest.fixture(scope="module")
def pairs() -> int:
    # The pairs' log ratios scatter by sqrt(2) x the launch noise.
    return pairs_for_power(math.sqrt(2) * LAUNCH_CV, THRESHOLD)


def test_the_pairs_needed_follow_the_noise(pairs):
    assert 50 <= pairs <= 80  # ~62 at CV 7 % for a 5 % threshold
    assert pairs_for_power(0.02, THRESHOLD) == MIN_PAIRS
    assert pairs_for_power(0.5, THRESHOLD, max_pairs=200) == 200
    assert minimum_detectable_ratio(math.sqrt(2) * LAUNCH_CV, pairs) <= THRESHOLD
    assert minimum_detectable_ratio(math.sqrt(2) * LAUNCH_CV, 10) > THRESHOLD


def test_a_five_percent_slowdown_is_caught_nine_nights_in_ten(pairs):
    assert _rate(THRESHOLD, pairs, "REGRESSED", seed=1) >= 0.9


def test_an_unchanged_model_is_almost_never_flagged(pairs):
    # About alpha x P(estimate past the floor): under 1 %; 300 nights resolve it to +-0.6 %.
    assert _rate(1.0, pairs, "REGRESSED", seed=2) <= 0.015


def test_a_faster_candidate_is_improved_and_few_pairs_are_unknown(pairs):
    rng = np.random.default_rng(3)
    test = paired_test(*_night(rng, pairs, 0.9), resamples=300)
    assert paired_decision(test, THRESHOLD)[0] == "IMPROVED" and test.ratio < 0.95
    few = paired_test(*_night(rng, MIN_PAIRS - 1, 1.5), resamples=300)
    assert paired_decision(few, THRESHOLD) == ("UNKNOWN", f"{MIN_PAIRS - 1} pair(s): need >= 8")


def test_log_ratios_and_noise():
    assert log_ratios([100, 200, 0], [110, 200, 5]).tolist() == pytest.approx([math.log(1.1), 0])
    with pytest.raises(ValueError):
        log_ratios([1, 2], [1])
    rng = np.random.default_rng(4)
    values = rng.normal(0, 0.1, 2000)
    values[:20] = 5.0  # a few launches a background task slowed
    assert robust_sigma(values) == pytest.approx(0.1, rel=0.1)


# -- trials sized by noise (`--trials auto`) ----------------------------------------------------
def _stored_run(store, run_id: str, started: str, rng, sigma: float, trials: int,
                paired: bool, device: str = "VIRT0001", cand_scale: float = 1.0) -> None:
    from harness.results.schema import Measurement

    store.start_run(run_id, started, "0", "host", {})
    for trial in range(trials):
        for kind, role in (("paired", "base"), ("timing", None)) if paired else (("timing", None),):
            value = 1000.0 * math.exp(rng.normal(0, sigma)) * (cand_scale if kind == "timing" else 1)
            store.add_measurement(Measurement(
                run_id=run_id, device_serial="127.0.0.1:1", device_id=device, adb_server="s",
                model_name="m", variant="baseline", status="ok", kind=kind, role=role,
                trial=trial, inference_avg_us=value, inference_min_us=value,
                started_at=f"{started[:10]}T00:00:{trial:02d}.000+00:00",
                finished_at=f"{started[:10]}T00:00:{trial:02d}.500+00:00"))
    store.finish_run(run_id, started, "ok", 0)


def test_trials_auto_follows_each_keys_noise_and_the_time_budget(tmp_path):
    """The pairs chosen are those the noise seen in the key's last runs needs; the noisiest
    device sets the count; a budget cuts it and says what the cut count can still see."""
    from harness.regress.noise import AUTO_MIN_PAIRS, FIRST_RUN_PAIRS, choose_trials, key_noise
    from harness.results.store import Store

    store = Store(tmp_path / "b.db")
    rng = np.random.default_rng(0)
    _stored_run(store, "r1", "2026-12-01T00:00:00Z", rng, 0.03, 40, paired=False)
    _stored_run(store, "r2", "2026-12-02T00:00:00Z", rng, 0.03, 40, paired=True)
    _stored_run(store, "r3", "2026-12-02T01:00:00Z", rng, 0.06, 40, paired=True, device="VIRT0002")
    noise = key_noise(store)
    quiet = next(n for k, n in noise.items() if k.device == "VIRT0001")
    # Pairs of launches each with noise 3 %: their log ratio scatters by sqrt(2) x 3 %.
    assert quiet.sigma_log == pytest.approx(math.sqrt(2) * 0.03, rel=0.3)
    assert quiet.runs == 2 and quiet.seconds_per_launch == pytest.approx(0.5)
    wanted = [("m", "baseline", "default", None)]
    choice = choose_trials(noise, wanted, 1.05, 0.01, None, paired=True)
    loud = next(n for k, n in noise.items() if k.device == "VIRT0002")
    assert choice.pairs == pairs_for_power(loud.sigma_log, 1.05) > pairs_for_power(quiet.sigma_log, 1.05)
    assert choice.mde_ratio == pytest.approx(minimum_detectable_ratio(loud.sigma_log, choice.pairs))
    # 1 s a pair (two launches of 0.5 s): a 20 s budget allows 20 pairs, which see less.
    cut = choose_trials(noise, wanted, 1.05, 0.01, 20.0, paired=True)
    assert cut.pairs == 20 < choice.pairs and cut.mde_ratio > choice.mde_ratio
    assert any("time budget" in line for line in cut.lines)
    # A key never seen: the first-run count.
    new = choose_trials(noise, [("m", "int8", "default", None)], 1.05, 0.01, None, paired=True)
    assert new.pairs == FIRST_RUN_PAIRS and new.mde_ratio is None
    # A night whose candidate was 10 % slower is no noisier: each run's pairs count about
    # their own change. And a quiet key still gets the floor that outvotes one bad pair.
    _stored_run(store, "r4", "2026-12-03T00:00:00Z", rng, 0.003, 40, paired=True,
                device="VIRT0003")
    _stored_run(store, "r5", "2026-12-03T01:00:00Z", rng, 0.003, 40, paired=True,
                device="VIRT0003", cand_scale=1.10)
    steady = next(n for k, n in key_noise(store).items() if k.device == "VIRT0003")
    assert steady.sigma_log < 0.01
    alone = {k: n for k, n in key_noise(store).items() if k.device == "VIRT0003"}
    assert choose_trials(alone, wanted, 1.05, 0.01, None, paired=True).pairs == AUTO_MIN_PAIRS
    store.close()
