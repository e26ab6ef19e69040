"""Hyperparameters a model is checked with before any training, and what the built-in ``mlp`` accepts.

A check point is ``model.hyperparameters`` with every ``search_space`` parameter at a
representative value: all at their low end (first choice), all at their high end (last
choice), then each middle choice of a categorical in turn, at most ``MAX_POINTS``. Each value
remembers the field it came from, so a refusal names it (``search_space.units``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from driftlab.config import CategoricalParam, ExperimentConfig, FloatParam, IntParam
from driftlab.errors import BadInput
from driftlab.runs.models import MLP_DEFAULTS, OPTIMIZERS

MAX_POINTS = 6


class HyperparameterError(BadInput):
    """A hyperparameter the model cannot be built with; the message names its field."""


@dataclass(frozen=True)
class Point:
    """The hyperparameters of one check, and where each tuned value came from."""

    hparams: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)  # name -> "search_space.units (its high end)"

    def field_of(self, name: str) -> str:
        return self.origin.get(name, "").split(" ")[0] or f"model.hyperparameters.{name}"

    def describe(self) -> str:
        """``units=96 (search_space.units, its high end), ...``: the tuned values of this point."""
        return ", ".join(f"{n}={self.hparams[n]!r} ({self.origin[n]})" for n in sorted(self.origin))


def _grid_top(low: float, high: float, step: float | None) -> float:
    return high if not step else low + math.floor((high - low) / step + 1e-9) * step


def _ends(p: IntParam | FloatParam | CategoricalParam) -> tuple[Any, Any]:
    if isinstance(p, CategoricalParam):
        return p.choices[0], p.choices[-1]
    if isinstance(p, IntParam):
        return p.low, int(_grid_top(p.low, p.high, p.step))
    return float(p.low), float(_grid_top(p.low, p.high, p.step))


def points(config: ExperimentConfig) -> list[Point]:
    """The check points (see the module doc); one point, the fixed values, without a search space.

    With ``tuning.study`` the tuned values come from that study at run time: only the fixed ones are known.
    """
    fixed = dict(config.model.hyperparameters)
    space = {} if config.tuning.study else dict(config.search_space)
    if not space:
        return [Point(fixed)]
    low = {n: _ends(p)[0] for n, p in space.items()}
    high = {n: _ends(p)[1] for n, p in space.items()}
    where_low = {n: f"search_space.{n} (its {'first choice' if isinstance(p, CategoricalParam) else 'low end'})"
                 for n, p in space.items()}
    where_high = {n: f"search_space.{n} (its {'last choice' if isinstance(p, CategoricalParam) else 'high end'})"
                  for n, p in space.items()}
    found = [Point({**fixed, **low}, where_low), Point({**fixed, **high}, where_high)]
    for name, p in space.items():
        if isinstance(p, CategoricalParam):
            for i, choice in enumerate(p.choices[1:-1], start=2):
                found.append(Point({**fixed, **low, name: choice},
                                   {**where_low, name: f"search_space.{name} (choice {i})"}))
    unique: list[Point] = []
    for point in found:
        if all(point.hparams != seen.hparams for seen in unique):
            unique.append(point)
    return unique[:MAX_POINTS]


# -- the built-in mlp ------------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _whole(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def _rule(name: str, value: Any) -> str | None:
    """What is wrong with one mlp hyperparameter value; None when the mlp builder can use it."""
    if name == "units":
        widths = value if isinstance(value, list) else [value]
        if not widths or any(_whole(w) is None or _whole(w) < 1 for w in widths):
            return "must be a whole number of units >= 1 (or a list of them, one per layer)"
    elif name == "layers":
        if _whole(value) is None or _whole(value) < 0:
            return "must be a whole number of hidden layers >= 0"
    elif name == "dropout":
        if _number(value) is None or not 0 <= _number(value) < 1:
            return "must be a dropout rate: a number from 0 up to (not including) 1"
    elif name == "learning_rate":
        if _number(value) is None or _number(value) <= 0:
            return "must be a number > 0"
    elif name == "optimizer":
        if value not in OPTIMIZERS:
            return f"must be one of {list(OPTIMIZERS)}"
    elif name == "activation":
        if not isinstance(value, str) or not value:
            return "must be the name of a Keras activation, e.g. relu"
    return None


def check_mlp(point: Point) -> None:
    """Refuse names the mlp builder does not take and values it cannot build with (checked without Keras)."""
    for name in sorted(point.hparams):
        value = point.hparams[name]
        where = f" ({point.origin[name].split(' ', 1)[1].strip('()')})" if name in point.origin else ""
        if name not in MLP_DEFAULTS:
            close = difflib.get_close_matches(name, list(MLP_DEFAULTS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise HyperparameterError(f"{point.field_of(name)}: the mlp builder has no hyperparameter '{name}'; "
                                      f"{hint}it takes {', '.join(sorted(MLP_DEFAULTS))} (or set model.builder "
                                      "to your own module:function)")
        problem = _rule(name, value)
        if problem:
            raise HyperparameterError(f"{point.field_of(name)}: {problem}; got {value!r}{where}")


def mlp_widths(hparams: dict[str, Any]) -> list[int]:
    hp = {**MLP_DEFAULTS, **hparams}
    units = hp["units"]
    return [int(w) for w in units] if isinstance(units, list) else [int(units)] * int(hp["layers"])


def mlp_parameters(hparams: dict[str, Any], *, n_features: int, n_outputs: int) -> int:
    """Weights and biases of the mlp ``build_mlp`` makes with ``hparams`` (valid ones, see ``check_mlp``)."""
    sizes = [n_features, *mlp_widths(hparams), n_outputs]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))
