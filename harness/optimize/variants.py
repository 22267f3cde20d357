"""Variant specs: what to do to a model (prune, fine-tune, sparsify, quantize) and its readable name.

Written on the command line as `--variant baseline` or `--variant prune=0.35,ft=2,quant=int8`, and
in bench.toml as `variants = ["baseline", "prune=0.35,ft=2,quant=int8"]`. The spec is the recipe
of one artifact: every knob is part of its cache key and of its stored metadata.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import UserError

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "random")
QUANT_MODES = ("fp32", "fp16", "dynamic_int8", "int8")
SCOPES = ("local", "global")
IO_TYPES = ("float", "int8")
_QUANT_SUFFIX = {"fp32": None, "fp16": "fp16", "dynamic_int8": "dyn8", "int8": "int8"}


@dataclass(frozen=True)
class VariantSpec:
    """One field per knob; what each allows, and how a spec writes it, is in KNOBS below."""

    prune: float | None = None        # structured pruning ratio, (0, 1)
    heads: float | None = None        # transformers: fraction of whole attention heads removed
    head_dim: float | None = None     # transformers: fraction of each head's dimensions removed
    mlp: float | None = None          # transformers: fraction of MLP hidden channels removed
    importance: str = "l1"
    scope: str = "local"              # local | global
    round_to: int | None = 8
    steps: int = 1                    # iterative prune -> fine-tune steps
    ft: float = 0.0                   # fine-tuning epochs in total (split over the steps)
    lr: float = 1e-4
    kd: bool = False                  # distill from the unpruned model while fine-tuning
    sparsity: float | None = None     # unstructured global magnitude pruning
    lt: bool = False                  # lottery-ticket rewind of surviving weights, then retrain
    quant: str = "fp32"
    io: str = "float"                 # int8 only: "float" or "int8" model inputs/outputs

    @property
    def is_baseline(self) -> bool:
        return self == VariantSpec()

    @property
    def structured(self) -> bool:
        """Channels, heads or MLP width removed (harness.optimize.prune.structured_prune)."""
        return any(v is not None for v in (self.prune, self.heads, self.head_dim, self.mlp))

    @property
    def needs_torch_changes(self) -> bool:
        return self.structured or self.sparsity is not None or self.ft > 0

    @property
    def name(self) -> str:
        """Readable and unique per recipe: `pruned35-ft2-int8`, `baseline`, `sparse50-fp16`."""
        parts = []
        transformer = [f"{label}{_percent(value)}" for label, value in
                       (("heads", self.heads), ("hdim", self.head_dim), ("mlp", self.mlp)) if value is not None]
        if self.structured:
            part = "-".join(([f"pruned{_percent(self.prune)}"] if self.prune is not None else []) + transformer)
            if self.importance != "l1":
                part += f"-{self.importance}"
            if self.scope != "local":
                part += f"-{self.scope}"
            if self.round_to != 8:
                part += f"-r{self.round_to or 1}"
            if self.steps != 1:
                part += f"-x{self.steps}"
            parts.append(part)
        if self.sparsity is not None:
            parts.append(f"sparse{_percent(self.sparsity)}")
        if self.lt:
            parts.append("lt")
        if self.ft:
            parts.append(f"ft{self.ft:g}")
            if self.lr != 1e-4:
                parts.append(f"lr{self.lr:g}")
        if self.kd:
            parts.append("kd")
        suffix = _QUANT_SUFFIX[self.quant]
        if suffix:
            parts.append(suffix + ("io8" if self.io == "int8" else ""))
        return "-".join(parts) or "baseline"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def torch_stage(self) -> "VariantSpec":
        """The same spec without quantization: the torch model it starts from."""
        return VariantSpec(**{**asdict(self), "quant": "fp32", "io": "float"})


def _percent(ratio: float) -> str:
    value = ratio * 100
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}".replace(".", "p")


# -- the knobs: one table -----------------------------------------------------------------------
# Each knob's converter, allowed values (its rule) and help text are written here once.
# parse_variant converts and checks specs with this table; PruneSettings, FineTuneSettings,
# unstructured_prune, make_importance and the quantizer check the same values with the same
# rules (check_knob), since library code calls them without a spec.


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of names."""

    choices: tuple[str, ...]

    @property
    def words(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def allows(self, value) -> bool:
        return value in self.choices

    def message(self, name: str, value, example: str) -> str:
        return f"unknown {name} {value!r}; choose {self.words}"


@dataclass(frozen=True)
class Fraction:
    """A ratio strictly between 0 and 1: 0 would change nothing, 1 would remove everything."""

    words = "a fraction in (0, 1)"

    def allows(self, value) -> bool:
        return isinstance(value, (int, float)) and 0.0 < float(value) < 1.0

    def message(self, name: str, value, example: str) -> str:
        return f"{name} {value!r} is outside (0, 1); give e.g. {example}"


@dataclass(frozen=True)
class AtLeast:
    """A number (an integer with `integer`) >= `low`, or > `low` with `strict`; None too with
    `none_ok` (the knob then does nothing)."""

    low: float
    integer: bool = False
    strict: bool = False
    none_ok: bool = False

    @property
    def words(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bound = f"{'>' if self.strict else '>='} {self.low:g}"
        return f"{kind} {bound}" + (" (or none)" if self.none_ok else "")

    def allows(self, value) -> bool:
        if value is None:
            return self.none_ok
        if not isinstance(value, int if self.integer else (int, float)):
            return False
        return value > self.low if self.strict else value >= self.low  # NaN fails both

    def message(self, name: str, value, example: str) -> str:
        return f"{name} {value!r} must be {self.words}"


@dataclass(frozen=True)
class Flag:
    """On or off: 1/0, true/false, yes/no, on/off in a spec."""

    words = "1 or 0"

    def allows(self, value) -> bool:
        return isinstance(value, bool)

    def message(self, name: str, value, example: str) -> str:
        return f"{name} {value!r} must be true or false"


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(raw: str) -> bool:
    if raw.lower() in _TRUE + _FALSE:
        return raw.lower() in _TRUE
    raise ValueError(raw)


def _round_to(raw: str) -> int | None:
    # A multiple of 1 rounds nothing: 0, 1 and none all mean "no rounding", stored as None.
    return None if raw.lower() in ("0", "none", "1") else int(raw)


@dataclass(frozen=True)
class Knob:
    """One `key=value` of a variant spec (and the VariantSpec field of the same name)."""

    name: str
    what: str                          # the knob in words
    rule: OneOf | Fraction | AtLeast | Flag
    example: str                       # a good value, as written in a spec
    convert: Callable[[str], Any] = str  # spec text -> value; ValueError when it is none
    note: str = ""                     # what else to know to write it

    @property
    def help(self) -> str:
        """What to write instead: the end of every error message about this knob in a spec."""
        return f"{self.what}: {self.rule.words}, e.g. {self.example}" + (f" ({self.note})" if self.note else "")


KNOBS: dict[str, Knob] = {knob.name: knob for knob in (
    Knob("prune", "structured pruning ratio", Fraction(), "prune=0.35", float),
    Knob("heads", "fraction of attention heads removed", Fraction(), "heads=0.25", float),
    Knob("head_dim", "fraction of each head's dimensions removed", Fraction(), "head_dim=0.25", float),
    Knob("mlp", "fraction of MLP hidden channels removed", Fraction(), "mlp=0.3", float),
    Knob("importance", "pruning importance", OneOf(IMPORTANCES), "importance=taylor"),
    Knob("scope", "pruning scope", OneOf(SCOPES), "scope=global"),
    Knob("round_to", "channel multiple", AtLeast(1, integer=True, none_ok=True), "round_to=8", _round_to,
         note="0, 1 or none: no rounding"),
    Knob("steps", "iterative prune/fine-tune steps", AtLeast(1, integer=True), "steps=3", int),
    Knob("ft", "fine-tuning epochs", AtLeast(0), "ft=2 or ft=0.5", float),
    Knob("lr", "fine-tuning learning rate", AtLeast(0, strict=True), "lr=1e-4", float),
    Knob("kd", "knowledge distillation from the unpruned model", Flag(), "kd=1", _flag),
    Knob("sparsity", "unstructured sparsity", Fraction(), "sparsity=0.5", float),
    Knob("lt", "lottery-ticket rewinding", Flag(), "lt=1", _flag),
    Knob("quant", "quantization mode", OneOf(QUANT_MODES), "quant=int8"),
    Knob("io", "model inputs/outputs", OneOf(IO_TYPES), "io=int8", note="int8 needs quant=int8"),
)}


def check_knob(key: str, value, name: str) -> None:
    """Knob `key`'s rule applied to a library setting: UserError naming it as `name` (how its
    caller calls it, e.g. "pruning ratio" for PruneSettings.ratio) and the fix."""
    knob = KNOBS[key]
    if not knob.rule.allows(value):
        raise UserError(knob.rule.message(name, value, knob.example))


def int8_io_allowed(quant: str) -> bool:
    """int8 model inputs/outputs exist only in full-integer models."""
    return quant == "int8"


def parse_variant(text: str) -> VariantSpec:
    """`baseline`, `fp32`, or comma-separated key=value knobs; UserError naming the bad part."""
    text = text.strip()
    if text in ("baseline", "fp32", ""):
        if not text:
            raise UserError("--variant is empty: use baseline or e.g. prune=0.35,ft=2,quant=int8")
        return VariantSpec()
    values: dict = {}
    for item in text.split(","):
        key, sep, raw = item.strip().partition("=")
        key = key.strip()
        if key in QUANT_MODES and not sep:  # shorthand: `--variant int8`, `prune=0.5,fp16`
            key, raw, sep = "quant", key, "="
        if not sep or key not in KNOBS:
            raise UserError(f"--variant {text}: {item.strip()!r} is not a known knob; "
                            f"use key=value with keys {', '.join(KNOBS)}")
        try:
            values[key] = KNOBS[key].convert(raw.strip())
        except ValueError:
            raise _bad(text, key, raw.strip()) from None
    for key, value in values.items():  # the knobs given; the defaults of the others are fine
        if not KNOBS[key].rule.allows(value):
            raise _bad(text, key, value)
    spec = VariantSpec(**values)
    _check_together(spec, text)
    return spec


def _bad(text: str, key: str, value) -> UserError:
    return UserError(f"--variant {text}: {key}={value}: expected {KNOBS[key].help}")


def _check_together(spec: VariantSpec, text: str) -> None:
    """The rules between knobs (each knob's own rule is in KNOBS)."""
    if spec.io == "int8" and not int8_io_allowed(spec.quant):
        raise _bad(text, "io", spec.io)
    if spec.lt and not spec.structured and spec.sparsity is None:
        raise UserError(f"--variant {text}: lt=1 rewinds a pruned model: add prune=, heads=, mlp= or sparsity=")
    if spec.kd and spec.ft <= 0:
        raise UserError(f"--variant {text}: kd=1 distills while fine-tuning: add ft=EPOCHS")


# What `bench run` builds when no variant is given: the whole mission on the default model,
# which trains in seconds (a pruned and fine-tuned variant, and that quantized to int8; lr 1e-3
# recovers digits_cnn's top-1 within 10 epochs where 1e-4 leaves it 1.4 pt down). Other
# models get their baseline only: pruning them means days of fine-tuning on data bench has not
# got, which is the user's recipe to give.
DEFAULT_VARIANTS = {
    "digits_cnn": ["baseline", "prune=0.5,ft=10,lr=1e-3", "prune=0.5,ft=10,lr=1e-3,quant=int8"],
}


def default_variants(model: str) -> list[str]:
    """The variant specs `bench run` uses for `model` when none are given."""
    return list(DEFAULT_VARIANTS.get(model, ["baseline"]))


def parse_variants(texts) -> list[VariantSpec]:
    """Several specs; duplicates (same recipe) are dropped, order kept."""
    specs: list[VariantSpec] = []
    for text in texts:
        spec = parse_variant(text)
        if spec not in specs:
            specs.append(spec)
    return specs or [VariantSpec()]
