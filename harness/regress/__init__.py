"""Regression verdicts: compare two runs key by key (compare), re-measure what regressed
(confirm), and write the verdicts for CI (junit)."""

# Interleaved launches per side for --confirm; here, not in confirm.py, so that the CLI's option
# can name its default without loading scipy (which compare.py imports) at every `bench` start.
DEFAULT_CONFIRM_TRIALS = 10
