"""Every DRIFTLAB_* variable is declared once, in driftlab.settings, and read or set only through it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from driftlab import settings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("driftlab", "components", "pipelines") for p in (ROOT / d).rglob("*.py")]
NAME = re.compile(r"DRIFTLAB_[A-Z0-9_]+")


def test_every_variable_has_a_meaning_a_kind_and_one_declaration():
    names = [s.name for s in settings.ALL]
    assert len(names) == len(set(names)) >= 20
    for s in settings.ALL:
        assert s.name.startswith("DRIFTLAB_") and len(s.meaning) > 15
        assert s.kind in (settings.YOURS, settings.RUN_TASKS, settings.PROCESS)


def test_no_module_names_a_variable_settings_does_not_declare():
    declared = {s.name for s in settings.ALL}
    for path in SOURCES:
        unknown = set(NAME.findall(path.read_text())) - declared
        assert not unknown, f"{path.relative_to(ROOT)} names {sorted(unknown)}: declare them in driftlab/settings.py"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            ids.add(id(node.body[0].value))
    return ids


def test_only_settings_spells_a_variable_name_in_code():
    offenders = []
    for path in SOURCES:
        if path == ROOT / "driftlab" / "settings.py":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                    and re.fullmatch(r"DRIFTLAB_[A-Z0-9_]+", node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not offenders, "use driftlab.settings.<NAME>.name / .get(): " + ", ".join(offenders)


def test_values_defaults_and_switches(monkeypatch):
    monkeypatch.delenv("DRIFTLAB_DB_RETRY_S", raising=False)
    assert settings.DB_RETRY_S.get() == "120" and settings.DB_RETRY_S.raw() is None
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", " 7 ")
    assert settings.DB_RETRY_S.get() == "7"
    for value, on in (("1", True), ("0", False), ("", False), ("yes", True)):
        monkeypatch.setenv("DRIFTLAB_QUIET", value)
        assert settings.QUIET.is_on() is on


def test_the_architecture_page_lists_every_setting():
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert settings.table() in page, "docs/ARCHITECTURE.md: paste driftlab.settings.table() again"
