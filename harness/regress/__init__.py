"""Regression verdicts: compare two runs key by key (compare), re-measure what regressed
(confirm), and write the verdicts for CI (junit)."""
