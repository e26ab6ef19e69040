"""`driftlab submit` / `driftlab schedule` against a local server speaking the KFP v2beta1 REST API.

No KFP cluster runs here, so a small HTTP server (http.server in a thread) answers
the calls the real ``kfp.Client`` makes — list/create experiments, create run,
list/upload pipelines and versions, create recurring run — with the JSON shapes
the KFP API server returns, and records every request. The tests assert on
what reached the server: paths, bodies, the compiled pipeline spec, the token.
"""

from __future__ import annotations

import email.parser
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from driftlab.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
API = "/apis/v2beta1"
TIMESTAMP = "2026-01-01T00:00:00Z"


class FakeKFP:
    """In-memory KFP: experiments, pipelines, versions, runs, recurring runs; records requests."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: list[dict] = []
        self.pipelines: list[dict] = []
        self.versions: list[dict] = []
        self.runs: list[dict] = []
        self.fail_with: int | None = None
        self.multi_user = False
        self._ids = 0

    def new_id(self, kind: str) -> str:
        self._ids += 1
        return f"{kind}-{self._ids:04d}"

    def of(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # -- handlers: (status, json body) ------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: dict | None, files: dict) -> tuple[int, dict]:
        if (method, path) == ("GET", f"{API}/healthz"):  # unauthenticated on a real server too
            return 200, {"commit_sha": "0" * 40, "tag_name": "2.5.0", "multi_user": self.multi_user}
        if self.fail_with:
            return self.fail_with, {"error": "denied", "code": 7, "message": "denied"}
        if (method, path) == ("GET", f"{API}/experiments"):
            wanted = _filter_name(query)
            found = [e for e in self.experiments if e["display_name"] == wanted]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/experiments"):
            exp = {**body, "experiment_id": self.new_id("exp"), "created_at": TIMESTAMP, "storage_state": "AVAILABLE"}
            self.experiments.append(exp)
            return 200, exp
        if (method, path) == ("POST", f"{API}/runs"):
            run = {**body, "run_id": self.new_id("run"), "created_at": TIMESTAMP, "state": "PENDING"}
            self.runs.append(run)
            return 200, run
        if method == "GET" and path.startswith(f"{API}/runs/"):
            found = [r for r in self.runs if r["run_id"] == path.rsplit("/", 1)[1]]
            return (200, found[0]) if found else (404, {"error": "run not found", "code": 5})
        if (method, path) == ("GET", f"{API}/pipelines"):
            wanted = _filter_name(query)
            found = [p for p in self.pipelines if p["display_name"] == wanted]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/pipelines/upload"):
            pipeline = {"pipeline_id": self.new_id("pipeline"), "display_name": query["name"][0],
                        "description": query.get("description", [""])[0], "created_at": TIMESTAMP}
            self.pipelines.append(pipeline)
            self._add_version(pipeline["pipeline_id"], pipeline["display_name"], files["uploadfile"])
            return 200, pipeline
        if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
            return 200, self._add_version(query["pipelineid"][0], query["name"][0], files["uploadfile"])
        if method == "GET" and path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[-2]
            wanted = _filter_name(query)
            found = [v for v in self.versions if v["pipeline_id"] == pipeline_id
                     and (wanted is None or v["display_name"] == wanted)]
            return 200, {"pipeline_versions": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/recurringruns"):
            return 200, {**body, "recurring_run_id": self.new_id("recurring"), "created_at": TIMESTAMP,
                         "status": "ENABLED"}
        return 404, {"error": f"no route {method} {path}", "code": 5}

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": self.new_id("version"), "display_name": name,
                   "created_at": TIMESTAMP, "pipeline_spec": next(yaml.safe_load_all(package))}
        self.versions.append(version)
        return version


def _form_files(content_type: str, raw: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.get_payload()}


def _filter_name(query: dict) -> str | None:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"][0])["predicates"]
    return next(p["string_value" if "string_value" in p else "stringValue"] for p in predicates
                if p["key"] == "display_name")


@pytest.fixture
def kfp_server():
    state = FakeKFP()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body, files = None, {}
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/form-data"):
                files = _form_files(ctype, raw)
            elif raw:
                body = json.loads(raw)
            state.requests.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                   "files": files, "authorization": self.headers.get("Authorization")})
            status, payload = state.handle(self.command, url.path, query, body, files)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _isolated_kfp(tmp_path, monkeypatch):
    # kfp.Client reads a context file under HOME and a token path from the environment.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KFP_HOST", "KFP_NAMESPACE", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The pipeline compiled once for the module (submit would otherwise compile per call)."""
    from driftlab.launch.submit import pipeline_package

    return pipeline_package(tmp_path_factory.mktemp("pkg"))


def test_submit_creates_experiment_and_run_with_config_text_only(kfp_server, package, capsys):
    code = main(["submit", str(QUICKSTART), "--host", kfp_server.host, "--run-name", "nightly-1",
                 "--experiment", "drift", "--campaign", "c1", "--package", str(package)])

    assert code == 0, capsys.readouterr().err
    (lookup,) = kfp_server.of("GET", f"{API}/experiments")
    assert json.loads(lookup["query"]["filter"][0])["predicates"][0]["key"] == "display_name"
    (created,) = kfp_server.of("POST", f"{API}/experiments")
    assert created["body"]["display_name"] == "drift"
    (run,) = kfp_server.of("POST", f"{API}/runs")
    body = run["body"]
    assert body["display_name"] == "nightly-1"
    assert body["experiment_id"] == kfp_server.experiments[0]["experiment_id"]
    assert body["service_account"] == "driftlab-pipeline"
    # The run carries the experiment file's text and the campaign, nothing else.
    assert body["runtime_config"]["parameters"] == {"config_yaml": QUICKSTART.read_text(), "campaign": "c1"}
    # The compiled spec travels inline; it is the driftlab pipeline with its placement.
    spec = body["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "driftlab"
    executors = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-retrain-across-nodes"]["nodeSelector"]["nodeSelectorJson"]
    assert run["authorization"] is None  # no token mounted, none sent
    assert "submitted run 'nightly-1'" in capsys.readouterr().out


def test_submit_reuses_an_existing_experiment_and_defaults_names(kfp_server, package):
    kfp_server.experiments.append({"experiment_id": "exp-existing", "display_name": "quickstart",
                                   "created_at": TIMESTAMP})
    assert main(["submit", str(QUICKSTART), "--host", kfp_server.host, "--package", str(package)]) == 0

    assert kfp_server.of("POST", f"{API}/experiments") == []
    (run,) = kfp_server.of("POST", f"{API}/runs")
    assert run["body"]["experiment_id"] == "exp-existing"
    assert run["body"]["display_name"] == "quickstart-default"
    assert run["body"]["runtime_config"]["parameters"]["campaign"] == "default"


def test_submit_host_from_environment_and_token_from_projected_volume(kfp_server, package, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("projected-sa-token\n")
    monkeypatch.setenv("KFP_HOST", kfp_server.host)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))

    assert main(["submit", str(QUICKSTART), "--package", str(package)]) == 0

    assert kfp_server.requests, "nothing reached the server"
    assert {r["authorization"] for r in kfp_server.requests} == {"Bearer projected-sa-token"}


def test_submit_reads_the_kfp_sdks_own_endpoint_variable(kfp_server, package, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", kfp_server.host)  # as `kfp` itself reads it; no KFP_HOST
    assert main(["submit", str(QUICKSTART), "--package", str(package)]) == 0
    assert kfp_server.of("POST", f"{API}/runs"), "the run reached the server named by KF_PIPELINES_ENDPOINT"


def test_submit_compiles_the_pipeline_when_no_package_is_given(kfp_server):
    assert main(["submit", str(QUICKSTART), "--host", kfp_server.host]) == 0

    (run,) = kfp_server.of("POST", f"{API}/runs")
    spec = run["body"]["pipeline_spec"]["pipeline_spec"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"config_yaml", "campaign"}


def test_schedule_uploads_a_version_once_and_creates_a_recurring_run(kfp_server, package, capsys):
    args = ["schedule", str(QUICKSTART), "--host", kfp_server.host, "--cron", "0 3 * * *", "--package", str(package)]
    assert main(args) == 0, capsys.readouterr().err

    (upload,) = kfp_server.of("POST", f"{API}/pipelines/upload")
    assert upload["query"]["name"] == ["driftlab"]
    uploaded_spec, uploaded_platform = yaml.safe_load_all(upload["files"]["uploadfile"])
    assert uploaded_spec["pipelineInfo"]["name"] == "driftlab"
    assert "platforms" in uploaded_platform  # placement travels with the uploaded package
    (version_upload,) = kfp_server.of("POST", f"{API}/pipelines/upload_version")
    version_name = version_upload["query"]["name"][0]
    assert version_name.startswith("driftlab-") and len(version_name) == len("driftlab-") + 12
    (job,) = kfp_server.of("POST", f"{API}/recurringruns")
    body = job["body"]
    assert body["display_name"] == "quickstart-schedule"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # KFP cron has seconds first
    assert int(body["max_concurrency"]) == 1  # int64: JSON may carry it as a string
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["service_account"] == "driftlab-pipeline"
    uploaded_version = next(v for v in kfp_server.versions if v["display_name"] == version_name)
    assert body["pipeline_version_reference"] == {"pipeline_id": kfp_server.pipelines[0]["pipeline_id"],
                                                  "pipeline_version_id": uploaded_version["pipeline_version_id"]}
    params = body["runtime_config"]["parameters"]
    assert params == {"config_yaml": QUICKSTART.read_text(), "campaign": "scheduled-[[ScheduledTime]]"}

    # Scheduling the same pipeline again reuses that version: nothing is uploaded twice.
    assert main(args + ["--name", "second"]) == 0
    assert len(kfp_server.of("POST", f"{API}/pipelines/upload")) == 1
    assert len(kfp_server.of("POST", f"{API}/pipelines/upload_version")) == 1
    second = kfp_server.of("POST", f"{API}/recurringruns")[1]["body"]
    assert second["pipeline_version_reference"] == body["pipeline_version_reference"]


def test_multi_user_namespace_reaches_experiment_lookup_and_creation(kfp_server, package):
    kfp_server.multi_user = True
    assert main(["submit", str(QUICKSTART), "--host", kfp_server.host, "--namespace", "driftlab",
                 "--package", str(package)]) == 0

    (lookup,) = kfp_server.of("GET", f"{API}/experiments")
    assert lookup["query"]["namespace"] == ["driftlab"]
    (created,) = kfp_server.of("POST", f"{API}/experiments")
    assert created["body"]["namespace"] == "driftlab"


@pytest.mark.parametrize("cron", ["every day", "0 3 * *", "0 0 0 3 * * *"])
def test_schedule_refuses_a_bad_cron_before_calling_the_server(kfp_server, package, cron, capsys):
    code = main(["schedule", str(QUICKSTART), "--host", kfp_server.host, "--cron", cron, "--package", str(package)])

    assert code == 2
    err = capsys.readouterr().err
    assert "--cron" in err and cron in err and "Traceback" not in err
    assert kfp_server.requests == []


def test_submit_without_host_names_the_flag_and_variable(capsys):
    assert main(["submit", str(QUICKSTART)]) == 2
    err = capsys.readouterr().err
    assert "--host" in err and "KFP_HOST" in err


def test_submit_refuses_a_config_whose_database_variable_the_secret_does_not_set(kfp_server, tmp_path, capsys):
    config = yaml.safe_load(QUICKSTART.read_text())
    config["storage"] = {"url_env": "MY_DB"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))

    assert main(["submit", str(path), "--host", kfp_server.host]) == 2
    err = capsys.readouterr().err
    assert "storage.url_env" in err and "MY_DB" in err and "DRIFTLAB_DB_URL" in err
    assert kfp_server.requests == []


def test_server_errors_become_one_line(kfp_server, package, capsys):
    kfp_server.fail_with = 403
    code = main(["submit", str(QUICKSTART), "--host", kfp_server.host, "--package", str(package)])

    assert code == 1
    err = capsys.readouterr().err
    assert "HTTP 403" in err and "--namespace" in err and "Traceback" not in err


def test_unreachable_server_names_the_host(package, capsys):
    # A port nothing listens on: bind one, then close it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    code = main(["submit", str(QUICKSTART), "--host", host, "--package", str(package)])

    assert code == 1
    err = capsys.readouterr().err
    assert host in err and "unreachable" in err


# -- the README's kfp CLI equivalents send the same requests ------------------------------------

def kfp_cli(host: str, home: Path, *args: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HOME": str(home)}
    env.pop("KF_PIPELINES_SA_TOKEN_PATH", None)
    kfp = Path(sys.executable).with_name("kfp")
    result = subprocess.run([str(kfp), "--endpoint", host, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_kfp_run_create_matches_driftlab_submit(kfp_server, package, tmp_path):
    config_text = QUICKSTART.read_text()
    kfp_cli(kfp_server.host, tmp_path, "run", "create", "--experiment-name", "quickstart", "--run-name", "by-cli",
            "--package-file", str(package), f"config_yaml={config_text}", "campaign=c1")
    assert main(["submit", str(QUICKSTART), "--host", kfp_server.host, "--run-name", "by-driftlab",
                 "--campaign", "c1", "--package", str(package)]) == 0

    by_cli, by_driftlab = (r["body"] for r in kfp_server.of("POST", f"{API}/runs"))
    assert by_cli["runtime_config"] == by_driftlab["runtime_config"]
    assert by_cli["pipeline_spec"] == by_driftlab["pipeline_spec"]
    assert by_cli["experiment_id"] == by_driftlab["experiment_id"]
    # What only driftlab submit sets: the kfp CLI has no service-account option.
    assert (by_cli.get("service_account"), by_driftlab["service_account"]) == (None, "driftlab-pipeline")


def test_readme_kfp_recurring_run_create_matches_driftlab_schedule(kfp_server, package, tmp_path):
    config_text = QUICKSTART.read_text()
    kfp_cli(kfp_server.host, tmp_path, "recurring-run", "create", "--experiment-name", "quickstart",
            "--job-name", "by-cli", "--cron-expression", "0 0 3 * * *", "--pipeline-package-path", str(package),
            f"config_yaml={config_text}", "campaign=scheduled-[[ScheduledTime]]")
    assert main(["schedule", str(QUICKSTART), "--host", kfp_server.host, "--cron", "0 3 * * *",
                 "--package", str(package)]) == 0

    by_cli, by_driftlab = (r["body"] for r in kfp_server.of("POST", f"{API}/recurringruns"))
    assert by_cli["runtime_config"] == by_driftlab["runtime_config"]
    assert by_cli["trigger"] == by_driftlab["trigger"]
    assert by_cli["no_catchup"] is by_driftlab["no_catchup"] is True
    # The CLI embeds the spec; driftlab schedule uploads it once as a pipeline version and refers to it.
    version = kfp_server.versions[-1]
    assert by_cli["pipeline_spec"] == {"pipeline_spec": version["pipeline_spec"],
                                       "platform_spec": by_cli["pipeline_spec"]["platform_spec"]}
    assert by_driftlab["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
