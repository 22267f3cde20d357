"""The `bench` group and its entry point: the one place that turns bench's errors into
messages and exit codes: bad input (errors.BAD_INPUT) -> 2, DeviceError/BenchmarkError -> 1,
each as one line on stderr. The commands are in the modules beside it, one stage each.
"""
from __future__ import annotations

import os
import sys

import click

from harness.cli.types import OptionError
from harness.errors import BAD_INPUT, BenchError


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group()
@click.version_option(package_name="bench", prog_name="bench")
def cli() -> None:
    """bench: prune, quantize, convert and benchmark models on Android devices (real or virtual)."""



def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _echo_err("aborted")
        sys.exit(130)
    except click.UsageError as exc:  # bad flags: one line, like every bad input
        hint = (f" (see `{exc.ctx.command_path} --help`)"
                if exc.ctx and not isinstance(exc, OptionError) else "")
        _echo_err(f"error: {' '.join(exc.format_message().splitlines())}{hint}")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BAD_INPUT as exc:  # UserError, and models' ModelInputError (see harness.errors)
        _echo_err(f"error: {exc}")
        sys.exit(2)
    except BenchError as exc:
        _echo_err(f"error: {exc}{_log_hint(exc)}")
        sys.exit(1)
    except KeyboardInterrupt:
        _echo_err("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("BENCH_DEBUG"):
            raise
        _echo_err(f"internal error: {type(exc).__name__}: {exc} (set BENCH_DEBUG=1 for the "
                  f"traceback){_log_hint(exc)}")
        sys.exit(1)


def _log_hint(exc: BaseException) -> str:
    """Where the run's captured output went (harness.run_log), when it got that far."""
    path = getattr(exc, "bench_log", None)
    return f" (log: {path})" if path else ""
