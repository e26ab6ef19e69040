"""Hyperparameters across the KFP boundary, with the types the experiment declares.

KFP carries ``dict`` parameters as a protobuf ``Struct``, whose only number is
a double: an ``int`` 27 arrives as 27.0, and a builder that passes
``hparams["units"]`` straight to ``keras.layers.Dense`` fails. driftlab
therefore hands tuned parameters between tasks as JSON *text* (``encode``),
which keeps ints, floats, bools and strings apart, and every stage that
receives them calls ``decode``, which also coerces each value to the type its
declaration gives (``search_space``, or the distributions of an existing
Optuna study, carried in the payload). This is the one place where
parameters enter a task.
"""

from __future__ import annotations

import json
import math
from typing import Any

from driftlab.errors import BadInput
from driftlab.config import CategoricalParam, ExperimentConfig, FloatParam, IntParam

#: Declared kinds a value can be coerced to.
KINDS = ("int", "float", "bool", "str", "categorical")


class ParamsError(BadInput):
    """Parameters that do not fit their declaration (names the parameter and the fix)."""


def declared_kinds(config: ExperimentConfig) -> dict[str, str]:
    """``{name: kind}`` for every ``search_space`` parameter."""
    kinds = {}
    for name, p in config.search_space.items():
        kinds[name] = "int" if isinstance(p, IntParam) else "float" if isinstance(p, FloatParam) else "categorical"
    return kinds


def value_kinds(values: dict[str, Any]) -> dict[str, str]:
    """The kind of each value by its Python type (for parameters no ``search_space`` declares)."""
    kinds = {}
    for name, value in values.items():
        for kind, types in (("bool", bool), ("int", int), ("float", float), ("str", str)):
            if isinstance(value, types):
                kinds[name] = kind
                break
    return kinds


def encode(params: dict[str, Any], kinds: dict[str, str] | None = None) -> str:
    """Parameters as JSON text for a KFP parameter: ``{"values": ..., "kinds": ...}``."""
    return json.dumps({"values": dict(params), "kinds": dict(kinds or {})}, sort_keys=True)


def payload(raw: dict[str, Any] | str | None) -> tuple[dict[str, Any], dict[str, str]]:
    if raw is None:
        return {}, {}
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else {}
    if not isinstance(raw, dict):
        raise ParamsError(f"best_params: expected a mapping of parameter names to values, got {type(raw).__name__}")
    if set(raw) == {"values", "kinds"} and isinstance(raw["values"], dict):
        return dict(raw["values"]), dict(raw["kinds"] or {})
    return dict(raw), {}


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ParamsError(f"{name}: expected an int, got the bool {value}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    raise ParamsError(f"{name}: expected an int, got {value!r}")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _as_choice(name: str, value: Any, choices: list[Any] | None) -> Any:
    if not choices:
        return value
    for choice in choices:  # the choice as declared: 32, not 32.0; True, not 1
        if type(choice) is type(value) and choice == value:
            return choice
    for choice in choices:
        if not isinstance(choice, bool) and not isinstance(value, bool) and choice == value:
            return choice
    raise ParamsError(f"{name}: {value!r} is not one of the declared choices {choices}")


def coerce(name: str, value: Any, kind: str | None, choices: list[Any] | None = None) -> Any:
    """``value`` as its declared ``kind``; unknown kinds leave it as it is."""
    if kind == "int":
        return _as_int(name, value)
    if kind == "float":
        return _as_float(name, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParamsError(f"{name}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ParamsError(f"{name}: expected a string, got {value!r}")
        return value
    if kind == "categorical":
        return _as_choice(name, value, choices)
    return value


def decode(config: ExperimentConfig, raw: dict[str, Any] | str | None) -> dict[str, Any]:
    """Tuned parameters as they arrived in a task, typed as the experiment declares them."""
    values, kinds = payload(raw)
    declared = declared_kinds(config)
    out = {}
    for name, value in values.items():
        p = config.search_space.get(name)
        kind = declared.get(name) or kinds.get(name)
        choices = list(p.choices) if isinstance(p, CategoricalParam) else None
        out[name] = coerce(f"search_space.{name}" if p is not None else name, value, kind, choices)
    return out


def encode_typed(config: ExperimentConfig, raw: dict[str, Any] | str | None) -> str:
    """``raw`` typed as declared, then encoded with every value's kind (declared, given, else its type)."""
    values, given = payload(raw)
    kinds = {**value_kinds(values), **given, **declared_kinds(config)}
    return encode(decode(config, raw), {k: kinds[k] for k in values if k in kinds})


def hyperparameters(config: ExperimentConfig, raw: dict[str, Any] | str | None) -> dict[str, Any]:
    """Fixed ``model.hyperparameters`` overridden by the tuned ones, every value typed."""
    return {**config.model.hyperparameters, **decode(config, raw)}
