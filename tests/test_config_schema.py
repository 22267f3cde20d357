"""The one config schema (harness.config_schema): every key typed and ranged, the same rules for
bench.toml, stored run configs and RunConfig objects; and acceptance 3, a seeded fuzz of the
config loader through the CLI: always exit 2 and one line, never a traceback."""
from __future__ import annotations

import datetime
import json
import random
import re
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from harness.config import (KNOWN_ABIS, BenchmarkSettings, HygieneSettings, RunConfig,
                            config_from_dict, load_config, validate_config)
from harness.config_schema import (BENCHMARK_RULES, HYGIENE_RULES, LAB_HYGIENE_RULES, RUN_RULES,
                                   SECTIONS, Kind, Rule)
from harness.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_the_schema_names_every_setting_of_the_dataclasses():
    own_tables = {"binaries", "benchmark", "lab", "hygiene"}
    set_by_flags = {"paired_baseline"}  # `bench run --baseline` sets it, --resume restores it
    assert set(RUN_RULES) == ({f.name for f in fields(RunConfig)} - own_tables - set_by_flags
                              | set(HYGIENE_RULES))
    assert set(BENCHMARK_RULES) == {f.name for f in fields(BenchmarkSettings)}
    # The thresholds' rules are keyed by HygieneSettings' fields (all but the push margin, which
    # is no setting); [run] and [lab] share each rule, not a copy of it.
    not_settings = {"storage_margin_bytes"}
    assert set(HYGIENE_RULES) == {f.name for f in fields(HygieneSettings)} - not_settings
    assert all(RUN_RULES[k] is rule for k, rule in HYGIENE_RULES.items())
    assert all(HYGIENE_RULES[k] is rule for k, rule in LAB_HYGIENE_RULES.items())
    # Every default passes its own rule.
    validate_config(RunConfig())


@pytest.mark.parametrize("text, message", [
    ('[run]\npeak_memory = "no"\n',
     '[run] peak_memory = "no": must be true or false (a TOML boolean, not a string)'),
    ("[run]\nretries = -1\n", "[run] retries = -1: must be an integer >= 0"),
    ('[run]\ntrials = "five"\n', '[run] trials = "five": must be an integer >= 1'),
    ("[run]\ntrials = 2.0\n", "[run] trials = 2.0: must be an integer >= 1"),
    ('[run]\nvariants = "baseline"\n', '[run] variants = "baseline": must be a list'),
    ("[run]\ndevice_wait_s = -5\n", "[run] device_wait_s = -5: must be a number >= 0"),
    ("[benchmark]\nnum_runs = -1\n", "[benchmark] num_runs = -1: must be an integer >= 1"),
    ("[benchmark]\nmin_secs = inf\n", "[benchmark] min_secs = inf: must be a finite number >= 0"),
    ("[benchmark]\nmax_secs = nan\n", "[benchmark] max_secs = nan: must be a finite number > 0"),
    ("[benchmark]\nmax_secs = 0\n", "[benchmark] max_secs = 0: must be a number > 0"),
    ("[benchmark]\nnum_runs = 9223372036854775807\n", "at most 2147483647"),
    ("[benchmark]\nuse_xnnpack = 1\n", "[benchmark] use_xnnpack = 1: must be true or false"),
    ('[run]\ndelegates = ["tpu"]\n', '[run] delegates = ["tpu"]: must be a list of values from'),
    ("[run]\nthreads = [0]\n", "[run] threads = [0]: must be a list of integers >= 1"),
    ('[run]\nbusy = "never"\n', '[run] busy = "never": must be one of "wait", "fail"'),
    ("[run]\nmin_battery_pct = 101\n",
     "[run] min_battery_pct = 101: must be an integer from 0 to 100"),
    ('[run]\nremote_dir = "tmp/bench"\n', "must be an absolute device path"),
    ("[lab]\nmax_temp_c = -1\n", "[lab] max_temp_c = -1: must be a number > 0 and <= 150"),
    ("[run]\nretry = 1\n", "[run] retry: unknown key (did you mean retries?)"),
    ("[benchmark]\nnum_run = 1\n", "[benchmark] num_run: unknown key (did you mean num_runs?)"),
    ("[becnhmark]\nnum_runs = 1\n", "unknown section [becnhmark]"),
    ("num_runs = 1\n", "num_runs = 1 at the top level: unknown key"),
    ("run = 3\n", "run = 3: must be a table"),
    ('[binaries]\nx86 = 5\n', "[binaries] x86 = 5: must be a non-empty string"),
    ('[lab.tags]\n"R58M" = ["big one"]\n', 'tag "big one": use 1-64 letters'),
    ('[run]\nmodel = "a"\n"we\\nird" = 1\n', r'[run] "we\nird": unknown key'),
])
def test_each_bad_value_is_one_line_naming_file_section_key_and_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert len(text.splitlines()) == 1


def test_good_values_are_normalized_to_the_dataclass_types(tmp_path):
    config = load_config(write(tmp_path, '[run]\ndevice_wait_s = 5\nstore_path = "x/b.db"\n'
                                         'threads = [1, 2]\n[benchmark]\nmin_secs = 0\n'
                                         'use_xnnpack = false\n[lab]\nmax_temp_c = 40\n'))
    assert config.device_wait_s == 5.0 and isinstance(config.device_wait_s, float)
    assert config.store_path == Path("x/b.db") and config.threads == [1, 2]
    assert config.benchmark.min_secs == 0.0 and config.benchmark.use_xnnpack is False
    assert config.lab.hygiene == {"max_temp_c": 40.0}


@pytest.mark.parametrize("raw, words", [
    (b"\xff\xfe[run]\n", "not UTF-8"),
    (b"[run\n", "not valid TOML"),
    (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid TOML"),
    (b"# " + b"x" * (2 << 20) + b"\n", "larger than 1 MiB"),
])
def test_unreadable_files_are_one_line_user_errors(tmp_path, raw, words):
    path = tmp_path / "bench.toml"
    path.write_bytes(raw)
    with pytest.raises(UserError, match=words) as info:
        load_config(path)
    assert len(str(info.value).splitlines()) == 1


def test_a_directory_or_dev_zero_as_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_config(tmp_path)
    with pytest.raises(UserError, match="larger than 1 MiB"):
        load_config(Path("/dev/zero"))


def test_stored_configs_round_trip_and_go_through_the_same_rules():
    config = RunConfig(variants=["baseline", "quant=fp16"], threads=[2], trials=3,
                       benchmark=BenchmarkSettings(num_runs=5, use_xnnpack=True))
    stored = json.loads(json.dumps(asdict(config), default=str))
    assert config_from_dict(stored) == config
    stored["benchmark"]["num_runs"] = 0
    with pytest.raises(UserError, match=r"stored run config: \[benchmark\] num_runs = 0"):
        config_from_dict(stored)
    with pytest.raises(UserError, match=r"\[run\] peak_memory"):
        config_from_dict({**json.loads(json.dumps(asdict(RunConfig()), default=str)),
                          "peak_memory": "on"})


def test_stored_configs_of_either_form_load_the_hygiene_thresholds():
    config = RunConfig(hygiene=HygieneSettings(min_battery_pct=30, cooldown_poll_s=0.5))
    stored = json.loads(json.dumps(asdict(config), default=str))
    assert config_from_dict(stored) == config
    # Runs stored before RunConfig.hygiene have the thresholds at the top level, as [run] has.
    flat = {k: v for k, v in stored.items() if k != "hygiene"}
    flat |= {"min_battery_pct": 30, "max_temp_c": 40, "max_thermal_status": 2,
             "cooldown_deadline_s": 60, "cooldown_poll_s": 0.5}
    assert config_from_dict(flat).hygiene == HygieneSettings(
        min_battery_pct=30, max_temp_c=40.0, max_thermal_status=2, cooldown_deadline_s=60.0,
        cooldown_poll_s=0.5)
    stored["hygiene"]["max_temp_c"] = -1
    with pytest.raises(UserError, match=r"\[run\] max_temp_c = -1: must be a number > 0"):
        config_from_dict(stored)


def test_run_hygiene_keys_fill_config_hygiene_and_lab_keys_override_them(tmp_path):
    config = load_config(write(tmp_path, "[run]\nmin_battery_pct = 50\nmax_temp_c = 40\n"
                                         "cooldown_poll_s = 1\n[lab]\nmax_temp_c = 42.5\n"))
    ran = HygieneSettings(min_battery_pct=50, max_temp_c=40.0, cooldown_poll_s=1.0)
    assert config.hygiene == ran
    assert config.effective_hygiene() == HygieneSettings(min_battery_pct=50, max_temp_c=42.5,
                                                         cooldown_poll_s=1.0)
    config.hygiene.max_temp_c = 0
    with pytest.raises(UserError, match=r"\[run\] max_temp_c = 0: must be a number > 0"):
        validate_config(config)


def test_run_benchmarks_checks_the_config_before_anything_is_written(tmp_path):
    from harness.run import run_benchmarks

    store, reports = tmp_path / "bench.db", tmp_path / "reports"
    for bad in (dict(trials=0), dict(peak_memory="no"), dict(variants="baseline"),
                dict(benchmark=BenchmarkSettings(max_secs=float("inf")))):
        with pytest.raises(UserError):
            run_benchmarks(RunConfig(store_path=store, reports_dir=reports, **bad))
    assert not store.exists() and not reports.exists()


# -- acceptance 3: fuzz ---------------------------------------------------------------------------
FUZZ_CASES = 300
FUZZ_SEED = 20240609
# Text with what breaks lines and quoting: newlines, separators, non-ASCII, an emoji, U+2028.
_ALPHABET = "ab Z9_-.:,;/\\\"'\n\t=[]{}#é\u2028😀"


def _random_text(rng: random.Random, max_len: int = 12) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, max_len)))


def _other_type_values(rng: random.Random) -> list:
    return [_random_text(rng), rng.choice(["no", "yes", "on", "off", "true", "five", ""]),
            rng.choice([True, False]), rng.randint(-10**6, 10**6), rng.uniform(-1e6, 1e6),
            [rng.randint(0, 9)], [_random_text(rng), 1], {"k": 1},
            datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5)]


def _wrong_value(rule: Rule, rng: random.Random):
    """A value the rule must refuse, picked without asking the rule."""
    kind, low, high = rule.kind, rule.low, rule.high
    if kind is Kind.BOOL:
        pool = [v for v in _other_type_values(rng) if not isinstance(v, bool)]
    elif kind in (Kind.INT, Kind.NUMBER):
        pool = [_random_text(rng), "5", True, [1], {"k": 1}, datetime.date(2024, 1, 2),
                float("nan"), float("inf"), float("-inf"), 2**31, -2**63, 1e300]
        if kind is Kind.INT:
            pool += [1.5, 2.0]
        if low is not None:
            pool.append(low if rule.low_open else low - rng.choice([1, 0.5, 1000]))
        if high is not None:
            pool.append(high + rng.choice([1, 0.5, 1000]))
    elif kind is Kind.CHOICE:
        pool = [v for v in _other_type_values(rng) if v not in rule.choices] + ["WAIT", "cpu "]
    elif kind in (Kind.TEXT, Kind.PATH):
        pool = [v for v in _other_type_values(rng) if not isinstance(v, str)] + [""]
        if rule.absolute:
            pool.append("relative/" + _random_text(rng))
    else:  # lists
        item = rule.item()
        pool = [_random_text(rng), 7, True, {"k": 1}, [[1]], [_wrong_value(item, rng)],
                [_wrong_value(item, rng), _wrong_value(item, rng)]]
        if rule.non_empty:
            pool.append([])
    return rng.choice(pool)


def _unknown_key(rng: random.Random, known) -> str:
    while True:
        key = rng.choice(["x", "num-runs", "peakmemory", "retry", "Model", ""])
        key += _random_text(rng, 4)
        if key not in known:
            return key


def _table(doc: dict, name: str) -> dict | None:
    """doc[name] as a table to add keys to; None when a fault already made it something else."""
    table = doc.setdefault(name, {})
    return table if isinstance(table, dict) else None


_LAB_TABLE_FAULTS = [
    {"a": "10.0.0.5"}, {"a": "h:0"}, {"a": "h:99999"}, {"a": "h:\u00b2"}, {"a": 5037},
    {"a": ":5037"}, {"SERIAL": "big"}, {"SERIAL": ["a b"]}, {"SERIAL": ["x:y"]}, {"SERIAL": [""]},
    {"SERIAL": [1]}, {"SERIAL": ["-lead"]}, {"mips": {"path": "p"}}, {"x86": {"sha256": "0" * 64}},
    {"x86": "p"}, {"x86": {"path": 3}}, {"x86": {"path": "p", "sha256": "xyz"}}, 7,
]


def _bad_document(rng: random.Random) -> dict:
    """A TOML document (as tables) with at least one wrong value, key, table or section.
    Whenever a fault is skipped, it is because an earlier fault already broke that section."""
    doc: dict = {}
    sections = {"run": RUN_RULES, "benchmark": BENCHMARK_RULES, "lab": LAB_HYGIENE_RULES}
    defaults = {**asdict(RunConfig()), **asdict(HygieneSettings()), **asdict(BenchmarkSettings())}
    for _ in range(rng.randint(0, 3)):  # some good values around the bad ones
        name = rng.choice(list(sections))
        key = rng.choice(list(sections[name]))
        if defaults.get(key) is not None and not isinstance(defaults[key], Path):
            doc.setdefault(name, {})[key] = defaults[key]
    for _ in range(rng.randint(1, 3)):
        what, name = rng.random(), rng.choice(list(sections))
        if what < 0.7:
            key = rng.choice(list(sections[name]))
            if (table := _table(doc, name)) is not None:
                table[key] = _wrong_value(sections[name][key], rng)
        elif what < 0.8:
            if (table := _table(doc, name)) is not None:
                table[_unknown_key(rng, sections[name])] = rng.choice(_other_type_values(rng))
        elif what < 0.85:
            doc[_unknown_key(rng, SECTIONS)] = rng.choice([{"a": 1}, 3, "x"])
        elif what < 0.9:
            doc[rng.choice(SECTIONS)] = rng.choice([5, "run", [1, 2], True])
        elif what < 0.95:
            if (table := _table(doc, "binaries")) is not None:
                if rng.random() < 0.5:
                    table[rng.choice(["mips", "arm64", "x86 "])] = "/opt/benchmark_model"
                else:
                    table[rng.choice(KNOWN_ABIS)] = rng.choice([3, "", ["a"], True, {"p": 1}])
        elif (table := _table(doc, "lab")) is not None:
            table[rng.choice(["servers", "tags", "binaries"])] = rng.choice(_LAB_TABLE_FAULTS)
    return doc


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else
                                             "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are TOML's too
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def to_toml(doc: dict) -> str:
    lines = []
    for name, value in doc.items():  # scalars first: after a [table] they would belong to it
        if not isinstance(value, dict):
            lines.append(f"{_toml_key(name)} = {_toml_value(value)}")
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{_toml_key(name)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def fuzz_configs(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [to_toml(_bad_document(rng)) for _ in range(count)]


def _one_error_line(stderr: str, path: Path) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {path}: "), stderr  # from the loader, naming the file
    return lines[0]


def test_fuzzed_configs_always_exit_2_with_one_line_in_process(tmp_path, monkeypatch, capsys):
    """The CLI's own path (harness.cli.main, `bench run --config F`), in this process for speed."""
    from harness.cli import main

    monkeypatch.chdir(tmp_path)  # were a config ever accepted, nothing lands in the repository
    path = tmp_path / "fuzz.toml"
    for i, text in enumerate(fuzz_configs(FUZZ_CASES, FUZZ_SEED)):
        path.write_text(text, encoding="utf-8")
        monkeypatch.setattr(sys, "argv", ["bench", "run", "--config", str(path)])
        with pytest.raises(SystemExit) as info:
            main()
        stderr = capsys.readouterr().err
        assert info.value.code == 2, f"case {i}:\n{text}\n{stderr}"
        _one_error_line(stderr, path)
    assert not (tmp_path / "reports").exists()


def test_fuzzed_configs_through_the_real_command(tmp_path):
    for i, text in enumerate(fuzz_configs(5, FUZZ_SEED + 1)):
        path = tmp_path / f"fuzz{i}.toml"
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--config", str(path)],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, f"{text}\n{proc.stderr}"
        _one_error_line(proc.stderr, path)
    assert not (tmp_path / "reports").exists()
