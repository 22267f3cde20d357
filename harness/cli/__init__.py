"""The `bench` command line: thin commands that parse flags and call the library, one module
per stage (run, optimize, results, lab, regress: compare, history, tag), on the group of
main.py, which alone maps bench's errors to messages and exit codes."""
from harness.cli import binaries, lab, optimize, results, run  # noqa: F401  (each registers its commands)
from harness.cli.regress import register as _register_compare_commands
from harness.cli.main import cli, main

_register_compare_commands(cli)  # history, compare, tag

__all__ = ["cli", "main"]
