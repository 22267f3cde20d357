"""A compare result as JUnit XML, so CI systems show one test case per key natively.

REGRESSED -> <failure>; INVALID and UNKNOWN -> <skipped> (no verdict is not a pass);
SAME and IMPROVED pass. ElementTree escapes markup in names and messages; `xml_text` drops the
characters XML cannot hold at all.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.atomic_write import write_atomic
from harness.regress.compare import INVALID, REGRESSED, UNKNOWN, CompareResult
from harness.escape import xml_text

SKIPPED = (INVALID, UNKNOWN)


def junit_tree(result: CompareResult) -> ET.ElementTree:
    cases = [("latency", v) for v in result.latency] + [
        (v.metric, v) for v in result.metrics]
    suite = ET.Element("testsuite", {
        "name": xml_text(f"bench compare {result.base_run} -> {result.cand_run}"),
        "tests": str(len(cases)),
        "failures": str(sum(v.verdict == REGRESSED for _, v in cases)),
        "skipped": str(sum(v.verdict in SKIPPED for _, v in cases)),
        "errors": "0"})
    for metric, v in cases:
        case = ET.SubElement(suite, "testcase", {"classname": f"bench.{metric}",
                                                 "name": xml_text(v.label)})
        message = f"{v.verdict}: {v.reason}"
        if getattr(v, "confirmation", None):
            message += f" [--confirm: {v.confirmation}]"
        message = xml_text(message)
        if v.verdict == REGRESSED:
            ET.SubElement(case, "failure", {"message": message, "type": REGRESSED}).text = message
        elif v.verdict in SKIPPED:
            ET.SubElement(case, "skipped", {"message": message})
        ET.SubElement(case, "system-out").text = message
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.ElementTree(root)


def write_junit(result: CompareResult, path: Path) -> Path:
    tree = junit_tree(result)
    ET.indent(tree)
    return write_atomic(Path(path), ET.tostring(tree.getroot(), encoding="utf-8",
                                                xml_declaration=True), "JUnit XML")
