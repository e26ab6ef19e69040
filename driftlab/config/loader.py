"""Read and validate an experiment file, turning every problem into a human line."""

from __future__ import annotations

import hashlib
import json
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from driftlab.errors import BadInput
from driftlab.config.schema import ExperimentConfig


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file."""

    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        shown = _short(self.value)
        where = self.field or "(file)"
        return f"{where}: {self.message}" + (f" (got {shown})" if shown is not None else "")


class ConfigError(BadInput):
    """An experiment file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the experiment file:\n{lines}")


_MISSING = object()

# A bounded repr: a YAML alias bomb (a list of lists of lists ... sharing one
# anchor) holds billions of elements by reference; repr() would expand them all.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80


def _short(value: Any) -> str | None:
    if value is _MISSING:
        return None
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _friendly(err: dict) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field (check the spelling; see examples/quickstart.yaml)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        if "mlp" in pattern:
            return "must be 'mlp' or a builder 'package.module:function'"
        return "must be lowercase letters, digits and '-', 1-63 characters, starting and ending alphanumeric"
    if kind == "union_tag_not_found":
        return "is required: one of 'int', 'float', 'categorical'"
    if kind == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags', '')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def _field_path(loc: tuple, data: Any = _MISSING) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(node, dict) and item in node:  # a key of the file, even one named like a pydantic tag
            node = node[item]
            parts.append(("." if parts else "") + str(item))
            continue
        if isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            node = node[item]
            parts.append(f"[{item}]")
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("int", "float", "categorical", "function-after[_range(), IntParam]"):
            continue  # discriminator tags add noise, not location
        elif str(item).startswith(("function-", "constrained-")) or item in ("list[int]", "str", "bool"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def problems_from(exc: ValidationError, data: Any = _MISSING) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        value = err.get("input", _MISSING) if err["type"] != "missing" else _MISSING
        if isinstance(value, dict) and err["type"] not in ("extra_forbidden",):
            value = _MISSING  # a whole mapping says nothing useful
        loc = tuple(err["loc"])
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):  # the problem is the tag field itself
            loc += (str((err.get("ctx") or {}).get("discriminator", "type")).strip("'"),)
            value = (err.get("ctx") or {}).get("tag", _MISSING)
        problems.append(Problem(_field_path(loc, data), value, _friendly(err)))
    # Union members repeat the same complaint; keep the first of each.
    seen, unique = set(), []
    for p in problems:
        key = (p.field, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", _MISSING, "the file must be a YAML mapping of fields "
                                           "(name, dataset, model, ...), not " + type(data).__name__)])
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_from(exc, data)) from None


def load_config_text(text: str, source: str = "<config>") -> ExperimentConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(source, [Problem("", _MISSING, f"is not valid YAML ({where}): "
                                           f"{getattr(exc, 'problem', exc)}")]) from None
    return parse_config(data, source)


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem("", _MISSING, "file not found; give the path of an "
                                              "experiment YAML such as examples/quickstart.yaml")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [Problem("", _MISSING, f"cannot be read: {exc}")]) from None
    return load_config_text(text, str(path))


def canonical_json(config: ExperimentConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def config_hash(config: ExperimentConfig) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


#: Sections that do not change what is measured: budgets are re-evaluated (``driftlab gate --config``),
#: a description is prose. Everything else plans the runs.
NOT_PLAN = ("description", "tolerances")


def plan_body(canonical: dict[str, Any]) -> dict[str, Any]:
    """The parts of a canonical config (``model_dump(mode="json")``) that decide which runs are made."""
    return {k: v for k, v in canonical.items() if k not in NOT_PLAN}


def plan_hash(config: ExperimentConfig | dict[str, Any]) -> str:
    """The hash of the experiment's plan: runs under one campaign all carry the same one."""
    body = plan_body(config if isinstance(config, dict) else config.model_dump(mode="json"))
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def plan_changes(old: dict[str, Any], new: dict[str, Any], *, limit: int = 6) -> list[str]:
    """What differs between two canonical configs' plans, as ``field: old → new`` lines."""
    a, b = _flatten(plan_body(old)), _flatten(plan_body(new))
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            before = _short(a[key]) if key in a else "(not set)"
            after = _short(b[key]) if key in b else "(not set)"
            lines.append(f"{key}: {before} → {after}")
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])
