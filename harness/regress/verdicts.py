"""One judgement of a candidate run against a baseline: the verdicts per key (compare), the
REGRESSED keys re-measured when asked (confirm), compare.md beside the candidate's report and,
when asked, JUnit XML. `bench compare` and `bench run --baseline` both call `judge`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.atomic_write import write_atomic


def judge(store, base_id: str, cand_id: str, out_dir: Path, thresholds=None,
          confirm_trials: int | None = None, junit_path: Path | None = None,
          log: Callable[[str], None] | None = None, paired: bool = True):
    """The CompareResult of `cand_id` against `base_id` (paired where `cand_id` launched the
    baseline's artifacts, unless `paired` is False); with `confirm_trials`, each REGRESSED key
    judged across runs takes the verdict of that many interleaved re-runs on its device. Writes
    `out_dir`/compare.md and, with `junit_path`, the JUnit XML there."""
    from harness.regress.compare import compare
    from harness.regress.render import compare_markdown

    result = compare(store, base_id, cand_id, thresholds, paired=paired)
    if confirm_trials is not None:
        from harness.regress.confirm import confirm_regressions

        result = confirm_regressions(store, result, confirm_trials, log=log)
    write_atomic(Path(out_dir) / "compare.md", compare_markdown(result), "compare.md")
    if junit_path is not None:
        from harness.regress.junit import write_junit

        write_junit(result, junit_path)
    return result
