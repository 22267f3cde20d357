"""Variant specs: what to do to a model (prune, fine-tune, sparsify, quantize) and its readable name.

Written on the command line as `--variant baseline` or `--variant prune=0.35,ft=2,quant=int8`, and
in bench.toml as `variants = ["baseline", "prune=0.35,ft=2,quant=int8"]`. The spec is the recipe
of one artifact: every knob is part of its cache key and of its stored metadata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import UserError

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "random")
QUANT_MODES = ("fp32", "fp16", "dynamic_int8", "int8")
SCOPES = ("local", "global")
_QUANT_SUFFIX = {"fp32": None, "fp16": "fp16", "dynamic_int8": "dyn8", "int8": "int8"}


@dataclass(frozen=True)
class VariantSpec:
    prune: float | None = None        # structured pruning ratio, (0, 1)
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
    def needs_torch_changes(self) -> bool:
        return self.prune is not None or self.sparsity is not None or self.ft > 0

    @property
    def name(self) -> str:
        """Readable and unique per recipe: `pruned35-ft2-int8`, `baseline`, `sparse50-fp16`."""
        parts = []
        if self.prune is not None:
            part = f"pruned{_percent(self.prune)}"
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


_KEYS = {
    "prune": "pruning ratio in (0, 1), e.g. prune=0.35",
    "importance": f"one of {', '.join(IMPORTANCES)}",
    "scope": "local or global",
    "round_to": "channel multiple, e.g. round_to=8 (0 or none: no rounding)",
    "steps": "iterative prune/fine-tune steps, an integer >= 1",
    "ft": "fine-tuning epochs, e.g. ft=2 or ft=0.5",
    "lr": "fine-tuning learning rate, e.g. lr=1e-4",
    "kd": "knowledge distillation from the unpruned model: kd=1",
    "sparsity": "unstructured sparsity in (0, 1), e.g. sparsity=0.5",
    "lt": "lottery-ticket rewinding: lt=1",
    "quant": f"one of {', '.join(QUANT_MODES)}",
    "io": "int8 model I/O for quant=int8: io=int8 (default float)",
}


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
        if not sep or key not in _KEYS:
            raise UserError(f"--variant {text}: {item.strip()!r} is not a known knob; "
                            f"use key=value with keys {', '.join(_KEYS)}")
        try:
            values[key] = _convert(key, raw.strip())
        except ValueError:
            raise UserError(f"--variant {text}: {key}={raw.strip()}: expected {_KEYS[key]}") from None
    spec = VariantSpec(**values)
    _validate(spec, text)
    return spec


def _convert(key: str, raw: str):
    if key in ("prune", "sparsity", "ft", "lr"):
        return float(raw)
    if key in ("steps",):
        return int(raw)
    if key == "round_to":
        return None if raw.lower() in ("0", "none", "1") else int(raw)
    if key in ("kd", "lt"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    return raw


def _validate(spec: VariantSpec, text: str) -> None:
    def bad(key: str, value) -> UserError:
        return UserError(f"--variant {text}: {key}={value}: expected {_KEYS[key]}")
    for key in ("prune", "sparsity"):
        value = getattr(spec, key)
        if value is not None and not 0 < value < 1:
            raise bad(key, value)
    if spec.importance not in IMPORTANCES:
        raise bad("importance", spec.importance)
    if spec.scope not in SCOPES:
        raise bad("scope", spec.scope)
    if spec.quant not in QUANT_MODES:
        raise bad("quant", spec.quant)
    if spec.io not in ("float", "int8") or (spec.io == "int8" and spec.quant != "int8"):
        raise bad("io", spec.io)
    if spec.steps < 1:
        raise bad("steps", spec.steps)
    if spec.ft < 0 or spec.lr <= 0:
        raise bad("ft" if spec.ft < 0 else "lr", spec.ft if spec.ft < 0 else spec.lr)
    if spec.round_to is not None and spec.round_to < 1:
        raise bad("round_to", spec.round_to)
    if spec.lt and spec.prune is None and spec.sparsity is None:
        raise UserError(f"--variant {text}: lt=1 rewinds a pruned model: add prune= or sparsity=")
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
