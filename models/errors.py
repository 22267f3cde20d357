"""The one error `models` raises on purpose: bad input the user gave (a model name or file,
weights, data). Its message is one line naming the input and the fix.

`models` is a library of its own and imports nothing from `harness` (tests/test_models_datasets.py
checks that), so it cannot raise `harness.errors.UserError`. The dependency goes one way only:
`harness.errors` registers this class as bad input (`BAD_INPUT`), and the CLI reports it exactly
like a UserError (one line, exit 2).
"""


class ModelInputError(ValueError):
    """A model, weights file or data set the user named is unusable: one line naming it and the fix.

    A ValueError, so library callers that do not know bench can still catch it as a bad value."""
