"""`bench optimize` and `bench analyze`: variants and pruning sensitivity without devices."""
from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.types import NumberType, number
from harness.cli.main import cli
from harness.config_schema import RUN_RULES
from harness.errors import UserError


# -- optimize / analyze --------------------------------------------------------------------------
def _model_options(f):
    for option in reversed([
        click.argument("model"),
        click.option("--weights", default=None, help="State dict for a built-in architecture."),
        click.option("--input-shape", default=None, help="Input shape, e.g. 1,3,224,224."),
        click.option("--input", "inputs", multiple=True, metavar="NAME:DTYPE:SHAPE[:LOW,HIGH]",
                     help="One model input, in forward's order (repeatable), e.g. input_ids:int64:1,128."),
        click.option("--data", "data_dir", default=None,
                     help="ImageFolder directory, .npy inputs, or .jsonl token samples with labels."),
        click.option("--seed", type=NumberType(RUN_RULES["seed"]), default=0, show_default=True),
    ]):
        f = option(f)
    return f


def _load_model_and_data(model, weights, input_shape, inputs, data_dir, seed):
    from harness.run import _path_or_none, parse_input_shape
    from models.datasets import load_dataset
    from models.inputs import parse_inputs
    from models.registry import resolve_model

    source = resolve_model(model, weights=_path_or_none(weights),
                           input_shape=parse_input_shape(input_shape), inputs=parse_inputs(inputs))
    return source, load_dataset(source, _path_or_none(data_dir), seed=seed)


@cli.command()
@_model_options
@click.option("--variant", "variants", multiple=True, metavar="SPEC",
              help="baseline, or knobs like prune=0.5,ft=2,quant=int8 (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--verbose", is_flag=True,
              help="Show torch/LiteRT/quantizer output on the terminal too (by default it goes "
                   "to reports/optimize-<time>/bench.log only).")
def optimize(model, weights, input_shape, inputs, data_dir, seed, variants, as_json, verbose):
    """Build variants of MODEL (prune, fine-tune, quantize, convert, verify) without devices;
    no --variant: the model's default set, as `bench run`."""
    from datetime import datetime

    from harness.optimize.pipeline import Pipeline
    from harness.paths import cache_dir
    from harness.report import format_table, variants_table
    from harness.run_log import run_output
    from harness.optimize.variants import default_variants, parse_variants

    specs = parse_variants(variants or default_variants(model))
    with run_output(Path("reports"), verbose=verbose) as out:
        out.reporter.run_started(datetime.now().strftime("optimize-%Y%m%d-%H%M%S"))
        source, data = _load_model_and_data(model, weights, input_shape, inputs, data_dir, seed)
        artifacts = Pipeline(source, data, cache_dir(), seed=seed,
                             log=out.reporter).build_all(specs)
    if as_json:
        click.echo(json.dumps([a.to_json_dict() | {"path": str(a.path)} for a in artifacts],
                              indent=1, default=str))
        return
    click.echo(format_table(variants_table(artifacts)))
    for a in artifacts:
        click.echo(f"  {a.name}: {a.path}")
    click.echo(f"log: {out.log_path}")


@cli.command()
@_model_options
@click.option("--ratio", type=number(), default=0.3, show_default=True,
              help="Pruning ratio of the per-group sensitivity scan.")
@click.option("--json", "as_json", is_flag=True)
def analyze(model, weights, input_shape, inputs, data_dir, seed, ratio, as_json):
    """Per-layer parameters, MACs and channels, a pruning sensitivity scan, and a verdict."""
    from harness.optimize.analyze import analyze_model, format_analysis

    if not 0 < ratio < 1:
        raise UserError(f"--ratio {ratio}: give a pruning ratio between 0 and 1, e.g. 0.3")
    source, data = _load_model_and_data(model, weights, input_shape, inputs, data_dir, seed)
    report = analyze_model(source, data, ratio=ratio)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1, default=str))
        return
    click.echo(format_analysis(report))
