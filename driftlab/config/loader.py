"""Read and validate an experiment file, turning every problem into a human line."""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from driftlab import inputs, settings
from driftlab.errors import BadInput
from driftlab.config import yamlfile
from driftlab.config.schema import ExperimentConfig


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file."""

    field: str
    value: Any
    message: str
    line: int | None = None  # where the file spells the field (or the section holding it)

    def __str__(self) -> str:
        shown = _short(self.value)
        where = self.field or "(file)"
        notes = ([f"got {shown}"] if shown is not None else []) + ([f"line {self.line}"] if self.line else [])
        return f"{where}: {self.message}" + (f" ({'; '.join(notes)})" if notes else "")


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


_TYPES = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
          "string_type": "text"}


def _wrong_type(kind: str, value: Any) -> str:
    """Strict types: YAML's own types are final (a boolean is not a number, a quoted number is text)."""
    want = f"must be {_TYPES[kind]}"
    if isinstance(value, bool):
        return f"{want}, not true/false"
    if kind == "int_type" and isinstance(value, float):
        return f"{want} (write {int(value)}, not {value})" if value.is_integer() else want
    if kind == "string_type" and isinstance(value, (int, float)):
        return f"{want}; quote it (e.g. '{value}')"
    if kind == "bool_type" and isinstance(value, str):
        return f"{want}, not text (write true or false, without quotes)"
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value.strip()):
        number = float(value)
        spelled = f"{int(number)}" if kind == "int_type" and number.is_integer() else value.lower().replace("e", ".0e")
        return f"{want}; YAML reads {value} as text: write {spelled}"
    if isinstance(value, str) and _is_number(value):
        return f"{want}, not text (write the number without quotes)"
    return want


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _friendly(err: dict) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _TYPES:
        return _wrong_type(kind, err.get("input"))
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


def problems_from(exc: ValidationError, data: Any = _MISSING, lines: dict[str, int] | None = None) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        value = err.get("input", _MISSING) if err["type"] != "missing" else _MISSING
        if isinstance(value, dict) and err["type"] not in ("extra_forbidden",):
            value = _MISSING  # a whole mapping says nothing useful
        loc = tuple(err["loc"])
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):  # the problem is the tag field itself
            loc += (str((err.get("ctx") or {}).get("discriminator", "type")).strip("'"),)
            value = (err.get("ctx") or {}).get("tag", _MISSING)
        where = _field_path(loc, data)
        problems.append(Problem(where, value, _friendly(err), yamlfile.line_of(where, lines or {})))
    # Union members repeat the same complaint; keep the first of each.
    seen, unique = set(), []
    for p in problems:
        key = (p.field, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def parse_config(data: Any, source: str = "<config>", lines: dict[str, int] | None = None) -> ExperimentConfig:
    """Validate parsed YAML strictly (no coercion: ``true`` is no number, ``"yes"`` no boolean, ``6`` no text)."""
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", _MISSING, "the file must be a YAML mapping of fields "
                                           "(name, dataset, model, ...), not " + type(data).__name__)])
    try:
        return ExperimentConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ConfigError(source, problems_from(exc, data, lines)) from None


def _check_size(text: str, source: str) -> None:
    """Before parsing: no experiment text is longer than the most a file may be (``inputs.CONFIG_CEILING``)."""
    ceiling = inputs.CONFIG_CEILING
    if len(text) > ceiling or len(text.encode("utf-8", "surrogatepass")) > ceiling:
        raise ConfigError(source, [Problem("", _MISSING, f"is more than {inputs.human(ceiling)}, the most an "
                                           "experiment file can be (it travels in one pipeline-task argument); "
                                           "shorten it, e.g. drop long comments")])


def load_config_text(text: str, source: str = "<config>") -> ExperimentConfig:
    _check_size(text, source)
    try:
        parsed = yamlfile.parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(source, [Problem("", _MISSING, f"is not valid YAML ({where}): "
                                           f"{getattr(exc, 'problem', exc)}")]) from None
    except RecursionError:
        raise ConfigError(source, [Problem("", _MISSING, "is nested too deeply to read (hundreds of levels of "
                                           "lists or mappings); an experiment file needs a few")]) from None
    if parsed.repeated:
        raise ConfigError(source, [Problem(key, _MISSING, _given_more_than_once(lines))
                                   for key, lines in parsed.repeated.items()])
    return parse_config(parsed.data, source, parsed.lines)


def _given_more_than_once(lines: list[int]) -> str:
    times = "twice" if len(lines) == 2 else f"{len(lines)} times"
    return f"is given {times} (lines {', '.join(map(str, lines[:-1]))} and {lines[-1]}); keep one"


def read_config_text(path: str | Path) -> str:
    """An experiment file's text: a regular UTF-8 file of at most ``DRIFTLAB_MAX_CONFIG_BYTES``."""
    try:
        return inputs.read_text_bounded(path, settings.MAX_CONFIG_BYTES, "experiment file")
    except inputs.FileRefused as exc:
        hint = "; give the path of an experiment YAML such as examples/quickstart.yaml" if exc.missing else ""
        raise ConfigError(str(path), [Problem("", _MISSING, exc.reason + hint)]) from None


def load_config(path: str | Path) -> ExperimentConfig:
    return load_config_text(read_config_text(path), str(path))


def canonical_json(config: ExperimentConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def config_hash(config: ExperimentConfig) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


#: Sections that do not change what is measured: budgets are re-evaluated (``driftlab gate --config``),
#: a description is prose. Everything else plans the runs.
NOT_PLAN = ("description", "tolerances")
NOT_PLAN_MODEL = ("run_timeout_s",)


def plan_body(canonical: dict[str, Any]) -> dict[str, Any]:
    """The parts of a canonical config (``model_dump(mode="json")``) that decide which runs are made."""
    body = {k: v for k, v in canonical.items() if k not in NOT_PLAN}
    # How long a run may take, and how a stage is split into pods, do not decide which runs are made.
    if isinstance(body.get("model"), dict):
        body["model"] = {k: v for k, v in body["model"].items() if k not in NOT_PLAN_MODEL}
    if isinstance(body.get("seeds"), dict):
        body["seeds"] = {k: v for k, v in body["seeds"].items() if k != "shards"}
    profiles = body.get("profiles")
    if isinstance(profiles, dict) and isinstance(profiles.get("pools"), list):
        pools = [{k: v for k, v in p.items() if k != "shards"} if isinstance(p, dict) else p for p in profiles["pools"]]
        body["profiles"] = {**profiles, "pools": pools}
    return body


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
