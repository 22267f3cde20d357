"""Number options of the `bench` command line, judged by the config schema's rules.

Every numeric option of every command takes its type from here, so `inf`, `nan` and integers
beyond MAX_NUMBER are refused the same way as in bench.toml, with one line and exit 2.
"""
from __future__ import annotations

import json

import click

from harness.config_schema import MAX_NUMBER, Invalid, Kind, Rule
from harness.errors import UserError


class OptionError(click.BadParameter):
    """A bad option value, shown as one line: `--min-secs inf: must be a finite number >= 0`."""

    def format_message(self) -> str:
        return self.message


def shown(text) -> str:
    """Command-line text as typed, quoted and escaped when it holds odd characters."""
    text = str(text)
    return text if text.isprintable() and text.strip() == text and text else json.dumps(text)


def option_name(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    return param.opts[0] if getattr(param, "opts", None) else (param.human_readable_name or "value")


class NumberType(click.ParamType):
    """An integer or number option checked against a schema `Rule` (the item rule of a list)."""

    def __init__(self, rule: Rule):
        self.rule = rule.item() if rule.kind in (Kind.INT_LIST, Kind.TEXT_LIST) else rule
        if self.rule.kind not in (Kind.INT, Kind.NUMBER):
            raise TypeError(f"NumberType needs an INT or NUMBER rule, not {rule.kind}")
        self.name = "integer" if self.rule.kind is Kind.INT else "number"

    def convert(self, value, param, ctx):
        where = f"{option_name(param)} {shown(value)}"
        number = value
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            text = str(value).strip()
            try:
                number = int(text, 10) if self.rule.kind is Kind.INT else float(text)
            except ValueError:  # also int() of thousands of digits
                raise OptionError(f"{where}: must be {self.rule.expectation()}",
                                  ctx, param) from None
        try:
            return self.rule.check(number)
        except Invalid as exc:
            raise OptionError(f"{where}: {exc}", ctx, param) from None


class TrialsType(NumberType):
    """`--trials N` or `--trials auto` (sized by each key's noise: harness.regress.noise)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return super().convert(value, param, ctx)
        except OptionError as exc:
            raise OptionError(f"{exc.message} or auto", ctx, param) from None


class TextType(click.ParamType):
    """A text option checked against a schema `Rule` (e.g. `--devices ""` is refused here, by
    its flag's name, rather than later as a config value)."""

    name = "text"

    def __init__(self, rule: Rule):
        self.rule = rule.item() if rule.kind is Kind.TEXT_LIST else rule
        if self.rule.kind is not Kind.TEXT:
            raise TypeError(f"TextType needs a TEXT rule, not {rule.kind}")

    def convert(self, value, param, ctx):
        try:
            return self.rule.check(value)
        except Invalid as exc:
            raise OptionError(f"{option_name(param)} {shown(value)}: {exc}", ctx, param) from None


def integer(low: int | None = None, high: int | None = None) -> NumberType:
    return NumberType(Rule(Kind.INT, low, high))


def number(low: float | None = None, high: float | None = None,
           low_open: bool = False) -> NumberType:
    return NumberType(Rule(Kind.NUMBER, low, high, low_open=low_open))


def check_number_text(text: str, what: str, magnitude: float = MAX_NUMBER) -> None:
    """For numbers inside other text (`--threshold '*gpu*=1.1'`, `lab fault x=1`): a value that
    parses as a number must be finite and within +-magnitude; UserError otherwise."""
    try:
        value = float(text)
    except ValueError:
        return  # not a number: the caller's own parsing explains what it wants
    try:
        Rule(Kind.NUMBER, magnitude=magnitude).check(value)
    except Invalid as exc:
        raise UserError(f"{what}: {exc}") from None
