"""`bench binaries ...`: the benchmark_model binaries real phones run (fetched and pinned)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.cli.main import cli


@cli.group()
def binaries():
    """benchmark_model binaries for real phones: fetch Google's prebuilts, pin them, list them."""


@binaries.command("fetch")
@click.option("--abi", default="arm64-v8a", show_default=True,
              help="The phones' ABI (ro.product.cpu.abi).")
@click.option("--flavour", type=click.Choice(["tflite", "litert"]), default="tflite",
              show_default=True,
              help="tflite: the classic TFLite benchmark_model (TensorFlow's nightly); litert: "
                   "LiteRT's CompiledModel benchmark_model (what LiteRT CLI downloads).")
@click.option("--version", "version", default="latest", show_default=True,
              help="latest, or a published version (LiteRT: a release such as 2.2.0).")
@click.option("--flex", is_flag=True,
              help="The classic tool's Flex build (benchmark_model_plus_flex: select TF ops).")
@click.option("--base-url", default=None, metavar="URL",
              help="Download from this mirror instead of Google's storage (same layout).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="The config to pin it in (default: ./bench.toml, made if absent).")
@click.option("--repin", is_flag=True,
              help="Replace a pin whose binary changed upstream (results before and after then "
                   "come from different tools).")
def fetch_cmd(abi, flavour, version, flex, base_url, config_path, repin):
    """Download an official prebuilt benchmark_model, check it, cache it and pin it."""
    from harness.benchmark.flavours import Flavour
    from harness.benchmark.pins import fetch_and_pin
    from harness.progress import PlainReporter

    reporter = PlainReporter(sys.stderr, indent="")
    task = None

    def progress(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            task = reporter.task(f"benchmark_model ({flavour}, {abi})", total=total, unit="bytes")
        task.update(done)

    try:
        result = fetch_and_pin(abi, Flavour(flavour), version=version, base_url=base_url,
                               flex=flex, config_path=config_path, repin=repin, progress=progress)
    finally:
        if task is not None:
            task.finish()
    b = result.binary
    click.echo(f"{result.outcome}: [lab.binaries.{abi}] in {result.config_path}")
    click.echo(f"  source   {b.url}")
    click.echo(f"  sha256   {b.sha256}")
    click.echo(f"  size     {b.size_bytes} bytes")
    click.echo(f"  path     {b.path}")
    click.echo(f"  fetched  {b.fetched_at}")
    if result.previous_sha256 and result.previous_sha256 != b.sha256:
        click.echo(f"  replaces {result.previous_sha256}")
    click.echo("  its version and flags are learnt on the first device that runs it "
               "(bench doctor shows them)")


@binaries.command("list")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config (default: ./bench.toml when present).")
def list_cmd(config_path):
    """The pinned binaries of the config and every binary in bench's binary cache."""
    from harness.benchmark.binaries import file_sha256
    from harness.benchmark.fetch import cached_binaries
    from harness.config import load_config

    config = load_config(config_path)
    if config.lab.binaries:
        click.echo("pinned ([lab.binaries]):")
        for abi, pin in sorted(config.lab.binaries.items()):
            path = Path(pin.path).expanduser()
            state = ("ok" if path.is_file() and (not pin.sha256 or file_sha256(path) == pin.sha256)
                     else "MISSING" if not path.is_file() else "SHA256 DIFFERS")
            click.echo(f"  {abi}: {pin.flavour or '?'} {pin.version or ''} {path} "
                       f"sha256 {pin.sha256 or '(none)'} [{state}]")
    else:
        click.echo("pinned: none (bench binaries fetch --abi arm64-v8a pins one)")
    cached = cached_binaries()
    click.echo("cached:" if cached else "cached: none")
    for b in cached:
        click.echo(f"  {b.abi} {b.flavour} {b.version}: {b.sha256} ({b.size_bytes} bytes, "
                   f"{b.fetched_at}) from {b.url}")
