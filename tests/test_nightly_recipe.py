"""The README's nightly recipe is what benchmarks/nightly_e2e.py runs (issue 14, acceptance 3),
and it is a command line bench accepts as it stands."""
import importlib.util
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("nightly_e2e", ROOT / "benchmarks" / "nightly_e2e.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_runs_the_readmes_recipe_and_bench_accepts_it():
    from harness.cli import cli

    script = _script()
    recipe = script.readme_recipe()
    readme = (ROOT / "README.md").read_text()
    # The line right under the mark, in a bash block, is the one the script reads.
    after = readme.split(script.RECIPE_MARK)[1].splitlines()
    assert after[1] == "```bash" and after[2] == recipe
    assert recipe.startswith("bench run ") and "--baseline" in recipe and "--trials auto" in recipe
    # The nights run that line, split as a shell would, and nothing else.
    source = (ROOT / "benchmarks" / "nightly_e2e.py").read_text()
    assert source.count("shlex.split(recipe)") == 1 and "readme_recipe()" in source
    # Every flag of it parses (types and ranges included) under `bench run`, without running.
    args = shlex.split(recipe)[1:]
    command = cli.commands["run"]
    with command.make_context("run", args[1:]) as ctx:
        assert ctx.params["trials"] == "auto" and ctx.params["baseline"] == "tag:release"
        assert ctx.params["time_budget_s"] > 0 and ctx.params["junit_path"] is not None
