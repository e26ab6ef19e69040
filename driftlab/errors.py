"""One exception tree: every error driftlab raises on purpose derives from ``DriftlabError``.

Callers catch one thing. The CLI catches ``DriftlabError`` once, prints its message
(written for people: the field, the value, the fix) on one line and exits with its
``exit_code``: 2 for ``BadInput`` (an experiment or data file, a flag, a database that
cannot be used as it is), 1 for a failure of the work itself. Subclasses keep the
built-in base they had (``ValueError``, ``RuntimeError``), so code that caught those
still works.
"""

from __future__ import annotations


class DriftlabError(Exception):
    """An error driftlab raised on purpose; its message says what happened and what to do."""

    exit_code = 1


class BadInput(DriftlabError, ValueError):
    """Input a person can fix: exit status 2, one line, no traceback."""

    exit_code = 2
