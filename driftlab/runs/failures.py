"""Failure text people can act on: the user's exception and the user's own frames.

A run that raises is recorded with ``describe(exc)``: the first line is
``Type: message`` of the exception the user's code raised (for a model
builder, driftlab's ``model.builder: '<module:function>' raised Type:
message``), then up to ``MAX_FRAMES`` frames of the user's code, innermost
last, one a line::

    model.builder: 'user_builders:broken' raised ValueError: width must be positive
      File "/home/me/user_builders.py", line 20, in broken: raise ValueError("width must be positive")

"User code" is any frame whose file is not in the driftlab package, not in
the Python standard library and not in site-packages/dist-packages (Keras,
TensorFlow, KFP). Stages group failures by that first line (``group``) and
print each distinct one once.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

MAX_FRAMES = 3
MAX_CHARS = 2000
MAX_FIRST_LINE = 500

def _package_dirs() -> tuple[str, ...]:
    # driftlab itself, and its KFP layer (installed as driftlab.components / driftlab.pipelines,
    # which an editable install maps to the repository's components/ and pipelines/).
    import importlib.util

    dirs = {os.path.realpath(Path(__file__).resolve().parent.parent)}
    for name in ("driftlab.components", "driftlab.pipelines"):
        spec = importlib.util.find_spec(name)
        dirs.update(os.path.realpath(p) for p in (spec.submodule_search_locations or []) if spec)
    return tuple(sorted(dirs))


_PACKAGE_DIRS = _package_dirs()
_LIBRARY_DIRS = tuple(sorted({os.path.realpath(p) for key in ("stdlib", "platstdlib", "purelib", "platlib")
                              if (p := sysconfig.get_paths().get(key))}))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def is_user_file(filename: str) -> bool:
    """True for a file of the user's code (not driftlab, the standard library or an installed package)."""
    if not filename or filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    path = os.path.realpath(filename)
    parts = Path(path).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(_inside(path, d) for d in _PACKAGE_DIRS + _LIBRARY_DIRS)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost first (each once)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen):
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return seen


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if is_user_file(f.filename)]


def _raised_in_user_code(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and is_user_file(frames[-1].filename)


def users_exception(exc: BaseException) -> BaseException:
    """The exception to show: the outermost one the user's code raised, else the innermost one raised
    beneath the user's code (Keras called by a builder), else ``exc`` itself (driftlab's own message)."""
    chain = _chain(exc)
    for e in chain:
        if _raised_in_user_code(e):
            return e
    for e in reversed(chain):
        if _user_frames(e):
            return e
    return exc


def first_line(exc: BaseException) -> str:
    """``Type: message`` (first line of the message), bounded."""
    message = str(exc).strip()
    line = f"{type(exc).__name__}: {message.splitlines()[0]}" if message else type(exc).__name__
    return line if len(line) <= MAX_FIRST_LINE else line[:MAX_FIRST_LINE - 1] + "…"


def format_frame(frame: traceback.FrameSummary) -> str:
    code = (frame.line or "").strip()
    return f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}' + (f": {code}" if code else "")


def describe(exc: BaseException, *, max_frames: int = MAX_FRAMES, max_chars: int = MAX_CHARS) -> str:
    """The error text of a failed run: ``Type: message``, then the user's last frames (see the module doc)."""
    shown = users_exception(exc)
    head = first_line(shown)
    chain = _chain(exc)
    for outer, inner in zip(chain, chain[1:]):  # a builder's exception wrapped by driftlab says which builder
        if inner is shown and outer.__cause__ is shown and type(outer).__name__ == "ModelBuildError":
            wrapped = str(outer).strip().splitlines()[0] if str(outer).strip() else ""
            if wrapped.endswith(head):
                head = wrapped if len(wrapped) <= MAX_FIRST_LINE else head
    frames = _user_frames(shown) or next((f for e in chain if (f := _user_frames(e))), [])
    lines = [head, *(format_frame(f) for f in frames[-max_frames:] if max_frames > 0)]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def group(errors: list[str]) -> list[tuple[str, int, str]]:
    """Distinct failures by first line: (first line, count, one full error text); most frequent first."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    for error in errors:
        text = (error or "").strip() or "unknown error"
        head = text.splitlines()[0]
        counts[head] = counts.get(head, 0) + 1
        examples.setdefault(head, text)
    order = sorted(counts, key=lambda h: -counts[h])  # stable: ties keep first-seen order
    return [(head, counts[head], examples[head]) for head in order]
