"""Issue 9, point 8: every output escapes what it embeds. Real `bench run`s on a real virtual lab
benchmark a tiny .tflite copied under hostile names, then every file is read back as a
spreadsheet, a Markdown renderer, a browser or a CI system would read it.

bench shows a .tflite model by its file name without the suffix (`model_label`). A file name
cannot hold `/`, so the formula name is `=HYPERLINK("x","y")`: the closest real name to
`=HYPERLINK("http://x","y")` that reaches the reports whole.
"""
from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from harness.config import RunConfig
from harness.escape import csv_cell, md_code, md_text, plot_text, xml_text
from harness.targets.adb.virtual_lab import lab_down, lab_up
from harness.run import run_benchmarks
from tests.virtual_lab_fixtures import FAST_BENCHMARK as FAST

pytestmark = pytest.mark.slow

HTML_NAME = "<img src=x onerror=alert(1)>"
FORMULA_NAME = '=HYPERLINK("x","y")'


@pytest.fixture(scope="module")
def tiny_tflites(tmp_path_factory) -> list[bytes]:
    """Two different tiny .tflite files: the store keys artifacts by content, so one file under
    two names would be one artifact. One conversion; the second file has its last bias nudged."""
    import torch

    from harness.optimize.convert import convert_to_tflite

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    convert_to_tflite(model, np.random.default_rng(0).random((2, 3, 12, 12), dtype=np.float32),
                      path)
    first = path.read_bytes()
    bias = model[-1].bias.detach().numpy().astype("<f4")
    assert first.count(bias.tobytes()) == 1
    second = first.replace(bias.tobytes(), (bias + np.float32(0.01)).astype("<f4").tobytes())
    return [first, second]


@pytest.fixture(scope="module")
def runs(tiny_tflites, tmp_path_factory):
    """Two runs per hostile name (compare needs a key in both), one device, one launch each."""
    base = tmp_path_factory.mktemp("hostile")
    lab_up(1)
    try:
        done = {}
        for name, content in zip((HTML_NAME, FORMULA_NAME), tiny_tflites):
            model = base / "models" / f"{name}.tflite"
            model.parent.mkdir(exist_ok=True)
            model.write_bytes(content)
            results = []
            for _ in range(2):
                result = run_benchmarks(RunConfig(
                    model=str(model), benchmark=FAST, peak_memory=False, device_wait_s=20,
                    store_path=base / "bench.db", reports_dir=base / "reports"))
                assert result.exit_code == 0, [m.error for m in result.measurements]
                results.append(result)
            done[name] = results
        yield base, done
    finally:
        lab_down()


NAMES = pytest.mark.parametrize("name", [HTML_NAME, FORMULA_NAME])


@NAMES
def test_results_json_holds_the_exact_names(runs, name):
    _, done = runs
    data = json.loads((done[name][0].report_dir / "results.json").read_text(encoding="utf-8"))
    assert {m["model_name"] for m in data["measurements"]} == {name}
    assert [row["model"] for row in data["hashes"]] == [name]


@NAMES
def test_results_csv_neutralises_formulas_and_keeps_numbers(runs, name):
    _, done = runs
    text = (done[name][0].report_dir / "results.csv").read_text(encoding="utf-8")
    # Text cells are quoted and numbers are not: this reader turns every unquoted cell into a
    # float and fails on one that is not a number.
    header, *rows = csv.reader(io.StringIO(text), quoting=csv.QUOTE_NONNUMERIC)
    rows = [dict(zip(header, row)) for row in rows]
    assert rows and all(row["model_name"] == csv_cell(name) for row in rows)
    if name == FORMULA_NAME:
        assert rows[0]["model_name"] == "'" + FORMULA_NAME
    for row in rows:
        assert isinstance(row["inference_avg_us"], float) and row["inference_avg_us"] > 0
        for column, cell in row.items():
            if isinstance(cell, str):
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)


def _cells(markdown: str) -> list[list[str]]:
    """Table rows split as GFM splits them: on `|` not escaped by a backslash."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| "):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.replace("\\\\", ""))[1:-1]])
    return rows


@NAMES
def test_report_md_cells_show_the_name_as_text(runs, name):
    _, done = runs
    md = (done[name][0].report_dir / "report.md").read_text(encoding="utf-8")
    assert "<img" not in md and "<IMG" not in md
    hashes = [row for row in _cells(md) if row and row[0] == md_text(name)]
    assert len(hashes) == 1 and len(hashes[0]) == 4  # model, variant, 2 hashes: no extra cell
    assert hashes[0][1] == "baseline"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


@NAMES
def test_index_html_shows_the_name_as_text(runs, name):
    _, done = runs
    page = (done[name][0].report_dir / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page
    parsed = _Page()
    parsed.feed(page)
    assert all(img["src"].startswith("data:image/png;base64,") for img in parsed.images)
    assert name in parsed.text  # a table cell holding exactly the name, unescaped by the parser


@NAMES
def test_compare_md_and_junit_keep_the_exact_names(runs, name, tmp_path):
    from harness.cli import cli

    base, done = runs
    first, second = (r.run_id for r in done[name])
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(cli, [
        "compare", first, second, "--store", str(base / "bench.db"), "--output", str(tmp_path),
        "--junit", str(junit)])
    assert result.exit_code in (0, 1), result.output  # 1: a verdict said REGRESSED
    md = (tmp_path / "compare.md").read_text(encoding="utf-8")
    assert "<img" not in md
    # One latency row (11 cells), one size row and one delegated-nodes row (5 cells each): the
    # name added no cell boundary.
    rows = [row for row in _cells(md) if any(md_text(name) in c for c in row)]
    assert sorted(len(row) for row in rows) == [5, 5, 11], md
    assert f"size {md_text(name)}:baseline" in [row[1] for row in rows]
    cases = ET.parse(junit).getroot().find("testsuite").findall("testcase")
    names = {case.get("classname"): case.get("name") for case in cases}
    assert names["bench.latency"].startswith(f"{name}:baseline@")
    assert names["bench.size"] == f"size {name}:baseline"


def test_each_rule_by_hand():
    # The cases a lab run's names do not reach: pipes, backslashes, entities, links, control
    # characters, mathtext, and numbers that only look like formulas.
    assert md_text("a|b\\|c") == "a\\|b\\\\\\|c"
    assert md_text("![x](http://t) &lt; 1 < 2 & 3\n") == "!\\[x\\](http://t) &amp;lt; 1 < 2 & 3 "
    assert md_code("a`b") == "``a`b``"
    assert csv_cell("-0.28") == "-0.28" and csv_cell(-0.28) == -0.28
    assert csv_cell("-1+cmd") == "'-1+cmd" and csv_cell("\t=1") == "'\t=1"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("+1e5") == "+1e5"
    assert ET.fromstring(f"<a b=\"{xml_text(chr(27) + '[31m')}\"/>").get("b") == "\ufffd[31m"
    assert plot_text("$\\frac$") == "\\$\\frac\\$"
