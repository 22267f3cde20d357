"""The one typed schema of bench's settings: every key of every config section, its type and range.

`harness.config` checks bench.toml, stored run configs (--resume) and RunConfig objects against
these tables, and the command line's number options (`harness.cli.types`) use the same rules, so
a value is judged once, the same way, wherever it comes from.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from harness.benchmark.command import DELEGATES

# Bigger integers overflow benchmark_model's int flags and SQLite's INTEGER; bigger seconds are
# no timeout anyone means (and overflow some timeout arguments).
MAX_NUMBER = 2**31 - 1

BUSY_CHOICES = ("wait", "fail")

# Run tags (`bench tag`, `--baseline tag:NAME`) and device tags ([lab.tags], `--devices tag:NAME`)
# end up in selectors, file names and report cells: a safe set of characters only.
TAG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TAG_NAME_HELP = ("1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
                 "(no spaces, commas or colons)")


class Kind(Enum):
    BOOL = "bool"
    INT = "int"
    NUMBER = "number"      # int or float in the file, a float in the config
    TEXT = "text"
    PATH = "path"
    CHOICE = "choice"
    TEXT_LIST = "text_list"
    INT_LIST = "int_list"
    CHOICE_LIST = "choice_list"


class Invalid(ValueError):
    """A value breaks its rule; str() says what the value must be ("must be ...")."""


_SCALAR_OF_LIST = {Kind.TEXT_LIST: Kind.TEXT, Kind.INT_LIST: Kind.INT,
                   Kind.CHOICE_LIST: Kind.CHOICE}


@dataclass(frozen=True)
class Rule:
    """Type and range of one setting (for list kinds, of each item)."""

    kind: Kind
    low: float | None = None
    high: float | None = None
    low_open: bool = False           # low itself is not allowed
    choices: tuple[str, ...] = ()
    optional: bool = False           # None allowed (RunConfig, stored configs; TOML has no null)
    non_empty: bool = True           # strings and lists
    absolute: bool = False           # TEXT: a device path that starts with "/"
    magnitude: float = MAX_NUMBER    # INT, NUMBER: no value beyond +-magnitude
    example: str = ""                # shown after the expectation, e.g. '["baseline"]'

    def item(self) -> "Rule":
        """The rule of one item of a list kind (e.g. each `--threads` value)."""
        return Rule(_SCALAR_OF_LIST.get(self.kind, self.kind), self.low, self.high,
                    self.low_open, self.choices)

    def expectation(self) -> str:
        kind = self.kind
        if kind in _SCALAR_OF_LIST:
            text = (f"a {'non-empty ' if self.non_empty else ''}list of "
                    f"{_plural(self.item().expectation())}")
        elif kind is Kind.BOOL:
            text = "true or false"
        elif kind in (Kind.INT, Kind.NUMBER):
            text = ("an integer" if kind is Kind.INT else "a number") + self._range_text()
        elif kind is Kind.CHOICE:
            text = "one of " + ", ".join(json.dumps(c) for c in self.choices)
        elif kind is Kind.PATH:
            text = "a path (a non-empty string)"
        else:
            text = ("an absolute device path (a string starting with /)" if self.absolute
                    else "a non-empty string" if self.non_empty else "a string")
        return f"{text}, e.g. {self.example}" if self.example else text

    def _range_text(self) -> str:
        low, high = _num_text(self.low), _num_text(self.high)
        if self.low is not None and self.high is not None and not self.low_open:
            return f" from {low} to {high}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {low}")
        if self.high is not None:
            parts.append(f"<= {high}")
        return " " + " and ".join(parts) if parts else ""

    def check(self, value):
        """`value` as the config holds it (floats for NUMBER, Path for PATH); Invalid if it
        breaks the rule."""
        if value is None and self.optional:
            return None
        kind = self.kind
        if kind in _SCALAR_OF_LIST:
            if not isinstance(value, (list, tuple)) or (self.non_empty and not value):
                raise Invalid(f"must be {self.expectation()}")
            item = self.item()
            try:
                return [item.check(v) for v in value]
            except Invalid:
                raise Invalid(f"must be {self.expectation()}") from None
        if kind is Kind.BOOL:
            if not isinstance(value, bool):
                hint = " (a TOML boolean, not a string)" if isinstance(value, str) else ""
                raise Invalid(f"must be {self.expectation()}{hint}")
            return value
        if kind in (Kind.INT, Kind.NUMBER):
            return self._check_number(value)
        if kind is Kind.CHOICE:
            if not isinstance(value, str) or value not in self.choices:
                raise Invalid(f"must be {self.expectation()}")
            return value
        if kind is Kind.PATH:
            if isinstance(value, Path):
                return value
            if not isinstance(value, str) or not value or "\0" in value:
                raise Invalid(f"must be {self.expectation()}")
            return Path(value)
        if not isinstance(value, str) or (self.non_empty and not value.strip()) \
                or (self.absolute and not value.startswith("/")):
            raise Invalid(f"must be {self.expectation()}")
        return value

    def _check_number(self, value):
        integer = self.kind is Kind.INT
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (integer and not isinstance(value, int)):
            raise Invalid(f"must be {self.expectation()}")
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number{self._range_text()}")
        if abs(value) > self.magnitude:
            raise Invalid(f"must be {self.expectation()} (at most {int(self.magnitude)} in size)")
        if (self.low is not None and (value < self.low or (self.low_open and value == self.low))) \
                or (self.high is not None and value > self.high):
            raise Invalid(f"must be {self.expectation()}")
        return int(value) if integer else float(value)


def _num_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _plural(expectation: str) -> str:
    # "an integer >= 1" -> "integers >= 1"; "one of ..." stays.
    for article, noun in (("an integer", "integers"), ("a number", "numbers"),
                          ("a non-empty string", "non-empty strings"), ("a string", "strings")):
        if expectation.startswith(article):
            return noun + expectation[len(article):]
    if expectation.startswith("one of "):
        return "values from " + expectation[len("one of "):]
    return expectation


def _int(low=None, high=None, **kw) -> Rule:
    return Rule(Kind.INT, low, high, **kw)


def _seconds(low_open: bool = False) -> Rule:
    return Rule(Kind.NUMBER, 0, low_open=low_open)


# -- the tables: section -> key -> rule ----------------------------------------------------------
# The measurement-hygiene thresholds (harness.config.HygieneSettings, keyed by its field names):
# keys of [run], and all but cooldown_poll_s of [lab].
HYGIENE_RULES: dict[str, Rule] = {
    "min_battery_pct": _int(0, 100),
    "max_temp_c": Rule(Kind.NUMBER, 0, 150, low_open=True),
    "max_cpu_temp_c": Rule(Kind.NUMBER, 0, 150, low_open=True, optional=True),
    "max_thermal_status": _int(0, 6),  # Android's THERMAL_STATUS_NONE .. _SHUTDOWN
    "cooldown_deadline_s": _seconds(),
    "cooldown_poll_s": _seconds(low_open=True),
}

# [run] (RunConfig's own fields and the hygiene thresholds, which RunConfig keeps in `hygiene`;
# `binaries`, `benchmark` and `lab` are sections of their own).
RUN_RULES: dict[str, Rule] = {
    "devices": Rule(Kind.TEXT, example='"all"'),
    "model": Rule(Kind.TEXT, example='"digits_cnn"'),
    "variants": Rule(Kind.TEXT_LIST, example='["baseline", "quant=int8"]', non_empty=False),
    "weights": Rule(Kind.TEXT, optional=True),
    "input_shape": Rule(Kind.TEXT, optional=True, example='"1,3,224,224"'),
    "inputs": Rule(Kind.TEXT_LIST, example='["input_ids:int64:1,128", "attention_mask:int64:1,128"]',
                   non_empty=False),
    "data_dir": Rule(Kind.TEXT, optional=True),
    "seed": _int(0),
    "trials": _int(1),
    "auto_trials": Rule(Kind.BOOL),
    "time_budget_s": _seconds(),
    "delegates": Rule(Kind.CHOICE_LIST, choices=DELEGATES, non_empty=False),
    "threads": Rule(Kind.INT_LIST, 1, non_empty=False),
    "peak_memory": Rule(Kind.BOOL),
    "op_profiling": Rule(Kind.BOOL),
    "accuracy_on_device": _int(0),
    "accuracy_per_sample": Rule(Kind.BOOL),
    "accuracy_min_agreement": Rule(Kind.NUMBER, 0, 1),
    "pin_big_cores": Rule(Kind.BOOL),
    "pin_governors": Rule(Kind.BOOL),
    "retries": _int(0),
    "device_wait_s": _seconds(),
    "quarantine_after": _int(1),
    "busy": Rule(Kind.CHOICE, choices=BUSY_CHOICES),
    "cluster": Rule(Kind.TEXT, optional=True, example='"10.0.0.5:6379"'),
    "retry_on_sibling": Rule(Kind.BOOL),
    **HYGIENE_RULES,
    "store_path": Rule(Kind.PATH),
    "reports_dir": Rule(Kind.PATH),
    "remote_dir": Rule(Kind.TEXT, absolute=True, example='"/data/local/tmp/bench"'),
}

# [benchmark] (BenchmarkSettings: benchmark_model's flags).
BENCHMARK_RULES: dict[str, Rule] = {
    "num_runs": _int(1),
    "warmup_runs": _int(0),
    "min_secs": _seconds(),
    "max_secs": _seconds(low_open=True),
    "warmup_min_secs": _seconds(),
    "num_threads": _int(-1),  # -1: the tool's default
    "use_xnnpack": Rule(Kind.BOOL, optional=True),
    "startup_allowance_s": _seconds(),
}

# Keys of [lab] itself: the lab's thresholds override [run]'s. How often a hot device is polled
# is the run's business, not the lab's.
LAB_HYGIENE_RULES: dict[str, Rule] = {
    key: rule for key, rule in HYGIENE_RULES.items() if key != "cooldown_poll_s"}

BINARY_PATH_RULE = Rule(Kind.TEXT, example='"/opt/tflite/benchmark_model"')

SECTIONS = ("run", "benchmark", "binaries", "lab")


# -- how a message shows keys and values (always one line) ----------------------------------------
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_SHOWN = 60


def show_key(key) -> str:
    """A key as TOML would write it: bare when it can be, else quoted and escaped."""
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def show_value(value) -> str:
    """`value` in TOML spelling, on one line, shortened when long."""
    text = _toml_text(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def _toml_text(value, depth: int = 0) -> str:
    if depth > 3:
        return "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, float) or math.isfinite(value) else (
            "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # ASCII escapes: no line break can reach the terminal
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_text(v, depth + 1) for v in value[:8]) + (
            ", ...]" if len(value) > 8 else "]")
    if isinstance(value, dict):
        items = list(value.items())
        return "{" + ", ".join(f"{show_key(k)} = {_toml_text(v, depth + 1)}"
                               for k, v in items[:8]) + (", ...}" if len(items) > 8 else "}")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return json.dumps(str(value))


def tag_name_problem(name) -> str | None:
    """Why `name` is no valid tag (None when it is one)."""
    if isinstance(name, str) and TAG_NAME.fullmatch(name):
        return None
    return f"tag {show_value(name)}: use {TAG_NAME_HELP}"
