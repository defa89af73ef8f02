"""`cnnlab ui`: the pages' data from the library, a store nothing can write to, only runs' recorded
artifacts served, only requests addressed to its own names answered, clear start-up errors, and the
dashboard in Debian's chromium while a real sweep trains."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from starlette.testclient import TestClient
from test_sweep_postgres import PG_BIN, postgres  # noqa: F401 (the server fixture)
from typer.testing import CliRunner

from cnnlab.analyze import analyze_stored
from cnnlab.analyze.synthetic import curves, make_sweep, store_run
from cnnlab.cli import app
from cnnlab.config import Experiment, apply_overrides
from cnnlab.errors import StoreError
from cnnlab.store import RunStore
from cnnlab.ui import create_app, open_source

XSS = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TRAVERSALS = ["/files/../runs.sqlite", "/files/runs.sqlite", "/files/%2e%2e/%2e%2e/etc/passwd",
              "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/files/runs/..%2F..%2F..%2Fetc%2Fpasswd",
              "/files/runs/nosuch.png"]
LOCAL = "http://127.0.0.1"  # the Host the dashboard answers to (TestClient's default is refused)
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A store with a synthetic sweep (2 optimizers × 2 learning rates × 2 seeds), a run named like
    an attack and a PNG artifact inside the store folder."""
    root = tmp_path_factory.mktemp("ui") / "store"
    with RunStore(root=root) as store:
        make_sweep(store, "study", {"train.optimizer": ["adam", "sgd"], "train.lr": [1e-3, 1e-1]},
                   seeds=(0, 1), epochs=6)
        base = apply_overrides(Experiment().resolved(), {"train.epochs": 6})
        attack = store_run(store, {**base, "name": XSS, "seed": 7}, curves(6, seed=7))
        figure = store.run_dir(attack) / "curves.png"
        figure.write_bytes(b"\x89PNG\r\n\x1a\n")
        store.add_artifact(attack, "figure", figure)
    return root


@pytest.fixture(scope="module")
def client(home) -> Iterator[TestClient]:
    with TestClient(create_app(open_source(f"sqlite:///{home}/runs.sqlite")), base_url=LOCAL) as test_client:
        yield test_client


def test_runs_data_lists_every_run_with_its_numbers(client, home):
    data = client.get("/api/runs").json()
    assert len(data["runs"]) == 9
    assert data["sweeps"] == ["study"]
    attack = next(run for run in data["runs"] if run["name"] == XSS)
    stored = RunStore(root=home).get_run(attack["id"])
    assert attack["best_val_acc"] == pytest.approx(stored.best_val_acc)
    assert attack["epochs_done"] == 6 and attack["model"] == stored.model


def test_epochs_of_many_runs_in_one_query_equal_each_runs_epochs(home):
    store = RunStore(root=home)
    ids = [run.id for run in store.list_runs()]
    together = store.epochs_of([*ids, "rmissing0"])
    assert together.pop("rmissing0") == []
    # str(): NaN losses of the diverging runs compare equal as text, not as floats
    assert {run_id: str(epochs) for run_id, epochs in together.items()} == {
        run_id: str(store.epochs(run_id)) for run_id in ids}
    assert any("nan" in str(epochs) for epochs in together.values())


def test_study_data_is_the_analysis_of_cnnlab_report(client, home):
    data = client.get("/api/sweeps/study").json()
    study = analyze_stored(RunStore(root=home), ["study"])
    assert [row["label"] for row in data["analysis"]["ranking"]] == [r.cell.label for r in study.ranking.rows]
    assert data["analysis"]["conclusions"] == study.conclusions.sentences()
    assert data["total"] == 8 and data["counts"]["done"] + data["counts"]["diverged"] == 8
    assert data["cells_metric"] == study.metric.name  # the cells show the ranking's metric here
    ranked = {row.cell.label: row.summary.mean for row in study.ranking.rows}
    assert {cell["label"]: cell["mean"] for cell in data["cells"]} == pytest.approx(ranked)
    plotted = sum(len(run["epoch"]) for run in data["analysis"]["runs"])
    assert plotted == sum(len(r.epochs) for r in study.runs)
    figures = client.get("/api/sweeps/study/figures").json()["figures"]
    titles = [figure["title"] for figure in figures]
    # one effect figure per varying setting, and the interaction plot of the two
    assert len(figures) == 3 and titles[0] == "Interaction of optimizer and lr", titles
    png = client.get("/api/sweeps/study/figures/0.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


def test_a_mixture_run_has_curves_per_domain(tmp_path):
    rows = [{**row, "val/mnist_acc": row["val_acc"] + 0.01, "val/svhn_acc": row["val_acc"] - 0.2,
             "test/svhn_acc": row["val_acc"] - 0.21} for row in curves(4)]
    with RunStore(root=tmp_path) as store:
        run_id = store_run(store, apply_overrides(Experiment().resolved(), {"train.epochs": 4}), rows)
    with TestClient(create_app(open_source(f"sqlite:///{tmp_path}/runs.sqlite")), base_url=LOCAL) as local:
        data = local.get(f"/api/runs/{run_id}").json()
    assert data["domains"] == ["mnist", "svhn"]
    assert data["domain_curves"]["val/svhn_acc"] == pytest.approx([r["val/svhn_acc"] for r in rows])
    assert set(data["domain_curves"]) == {"epoch", "val/mnist_acc", "val/svhn_acc", "test/svhn_acc"}
    assert data["curves"]["val_acc"] == pytest.approx([r["val_acc"] for r in rows])


def test_compare_shows_the_settings_that_differ(client):
    runs = client.get("/api/runs").json()["runs"]
    adam = next(r["id"] for r in runs if r["sweep"] == "study")
    data = client.get(f"/api/compare?runs={adam},{runs[-1]['id']}").json()
    assert len(data["runs"]) == 2
    assert all(len(row) == 3 for row in data["settings"])


def test_compare_lists_no_difference_for_a_model_default_set_explicitly(tmp_path):
    """As `cnnlab compare`: model.dropout=0.5 written out is the run that leaves it to the default."""
    rows = curves(2)
    with RunStore(root=tmp_path) as store:
        plain = store_run(store, apply_overrides(Experiment().resolved(), {"train.epochs": 2}), rows)
        explicit = store_run(store, apply_overrides(Experiment().resolved(), {
            "train.epochs": 2, "model.dropout": 0.5, "seed": 1}), rows)
    with TestClient(create_app(open_source(f"sqlite:///{tmp_path}/runs.sqlite")), base_url=LOCAL) as local:
        data = local.get(f"/api/compare?runs={plain},{explicit}").json()
    assert [row[0] for row in data["settings"]] == ["seed"], data["settings"]


def test_pages_escape_run_text(client):
    attack = next(r["id"] for r in client.get("/api/runs").json()["runs"] if r["name"] == XSS)
    page = client.get(f"/runs/{attack}").text
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


def test_only_recorded_artifacts_inside_their_runs_folder_are_served(client, home):
    attack = next(r["id"] for r in client.get("/api/runs").json()["runs"] if r["name"] == XSS)
    artifact = client.get(f"/api/runs/{attack}").json()["artifacts"][0]
    assert artifact["url"] == f"/files/{attack}/curves.png"
    assert client.get(artifact["url"]).content == b"\x89PNG\r\n\x1a\n"
    (home.parent / "secret.txt").write_text("outside")
    (home / "beside.txt").write_text("beside the database")
    (store := RunStore(root=home)).run_dir(attack).joinpath("unrecorded.png").write_bytes(b"\x89PNG")
    # A store is data: an artifact it records elsewhere, or a link out of the run's folder, is not served.
    (home / "runs" / attack / "outward").symlink_to(home.parent)
    store.add_artifact(attack, "figure", home / "beside.txt")
    store.add_artifact(attack, "figure", home / "runs" / attack / "outward" / "secret.txt")
    links = {a["path"]: a["url"] for a in client.get(f"/api/runs/{attack}").json()["artifacts"]}
    assert links[str(home / "beside.txt")] is None
    assert links[str(home / "runs" / attack / "outward" / "secret.txt")] is None
    prefix = attack[:5]
    for path in [*TRAVERSALS, "/files/beside.txt", f"/files/{attack}/../beside.txt",
                 f"/files/{attack}/beside.txt",
                 f"/files/{attack}/%2e%2e/%2e%2e/beside.txt", f"/files/{attack}/unrecorded.png",
                 f"/files/{attack}/outward/secret.txt", f"/files/{prefix}/curves.png",
                 f"/files/{attack}/{home}/beside.txt", "/files/rnosuch00/curves.png"]:
        assert client.get(path).status_code == 404, path


def test_requests_for_another_host_name_are_refused(client):
    assert client.get("/api/runs").status_code == 200
    for name in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example"):
        refused = client.get("/api/runs", headers={"Host": name})
        assert refused.status_code == 400, name
    assert client.get("/api/runs", headers={"Host": "localhost:8765"}).status_code == 200


def test_requests_to_an_ip_address_are_answered_names_only_when_listened_on(client):
    """DNS rebinding needs a host name: an address literal (the machine's own, IPv6 in brackets,
    with or without a port) is answered, an unknown name or a malformed Host is not."""
    for host in ("[::1]:8765", "[::1]", "10.1.2.3", "10.1.2.3:8765", "[fe80::1]:80", "LOCALHOST"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "::1", "[::1", "[evil.example]:80", "10.1.2.3:port", "[::1]x",
                 "10.1.2.3.evil.example"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 400, host


def test_a_sweep_named_with_a_quote_and_non_ascii_downloads_under_its_name(tmp_path):
    """The name comes from the store: a quote must not end the header's filename, and a name
    outside Latin-1 is said as RFC 6266's filename*, with an ASCII fallback."""
    from urllib.parse import quote

    name = 'lr "sweep" é→ü 数'
    with RunStore(root=tmp_path) as store:
        make_sweep(store, name, {"train.lr": [1e-3, 1e-2]}, seeds=(0,), epochs=1)
    with TestClient(create_app(open_source(f"sqlite:///{tmp_path}/runs.sqlite")), base_url=LOCAL) as local:
        answer = local.get(f"/api/sweeps/{quote(name)}/results.csv")
    assert answer.status_code == 200, answer.text
    disposition = answer.headers["content-disposition"]
    assert disposition.isascii()
    fallback = re.search(r'filename="([^"]*)"', disposition).group(1)
    assert fallback.endswith("-results.csv") and '"' not in fallback and "\\" not in fallback
    assert f"filename*=UTF-8''{quote(name + '-results.csv')}" in disposition


def test_a_live_runs_summary_says_what_it_has_before_and_after_its_first_numbers(tmp_path):
    from cnnlab.ui import views

    config = apply_overrides(Experiment().resolved(), {"train.epochs": 10})
    with RunStore(root=tmp_path) as store:
        live = store.create_run(name="live", config=config, config_hash="h", cell_hash="c", seed=0,
                                host="synthetic", versions={})
    source = open_source(f"sqlite:///{tmp_path}/runs.sqlite")
    outcome = views.run_view(source, live)["diagnosis"]["outcome"]
    assert outcome == "still training, 0 of 10 epochs done (no numbers yet)"
    with RunStore(root=tmp_path) as store:
        store.log_epoch(live, 1, {"train_loss": 2.0, "train_acc": 0.2})
    outcome = views.run_view(source, live)["diagnosis"]["outcome"]
    assert outcome == "still training, epoch 1 of 10 (no numbers yet)"
    with RunStore(root=tmp_path) as store:
        store.log_epoch(live, 2, {"train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5, "val_loss": 1.0})
    assert views.run_view(source, live)["diagnosis"]["outcome"] == (
        "still training, epoch 2 of 10: best validation accuracy 50.00% at epoch 2, final 50.00% "
        "(its curves so far)")


def test_nothing_writes_to_the_store(client, home):
    files = sorted(home.glob("runs.sqlite*"))
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    folders = sorted(home.rglob("*"))
    run_id = client.get("/api/runs").json()["runs"][0]["id"]
    for url in ["/", "/api/runs", f"/runs/{run_id}", f"/api/runs/{run_id}", f"/api/runs/{run_id}/figures",
                "/sweeps/study", "/api/sweeps/study", f"/api/compare?runs={run_id}"]:
        assert client.get(url).status_code == 200, url
    after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(home.glob("runs.sqlite*"))}
    assert after == before
    assert sorted(home.rglob("*")) == folders  # no file or run folder made either
    store = open_source(f"sqlite:///{home}/runs.sqlite").store
    with pytest.raises(StoreError, match="read-only"):
        store.update_run(run_id, name="changed")


def test_the_sweep_page_reads_runs_through_the_dashboards_one_store(tmp_path, monkeypatch):
    """A sweep page reads the sweep's runs through the read-only store the dashboard holds: no
    second store (a new engine and connection pool) per request."""
    from rich.console import Console

    from cnnlab.sweep import Location, parse_sweep, run_sweep

    spec = parse_sweep({"name": "queued", "seeds": [0], "grid": {"train.lr": [0.01, 0.02]},
                        "base": {"data": {"dataset": "mnist-sample"}, "train": {"epochs": 1}}})
    run_sweep(spec, Location(root=str(tmp_path)), workers=0, live=False, console=Console(quiet=True))
    source = open_source(f"sqlite:///{tmp_path}/runs.sqlite", storage=str(tmp_path / "sweeps.journal"))
    opened: list[object] = []
    real = RunStore.__init__

    def counted(self, *args, **kwargs):
        opened.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(RunStore, "__init__", counted)
    with TestClient(create_app(source), base_url=LOCAL) as test_client:
        for _ in range(2):
            data = test_client.get("/api/sweeps/queued").json()
            assert data["counts"]["pending"] == 2 and data["total"] == 2
    assert opened == []


@pytest.mark.parametrize(("args", "message"), [
    (["--store", "sqlite:////nonexistent/runs.sqlite"], "no run store at sqlite:////nonexistent/runs.sqlite"),
    (["--store", "mysql://x/y"], "database 'mysql' is not one of sqlite, postgresql"),
    (["--host", "203.0.113.9"], "--host: '203.0.113.9' cannot be used"),
])
def test_start_up_errors_exit_2(home, args, message):
    result = runner.invoke(app, ["ui", "--store", f"sqlite:///{home}/runs.sqlite", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_port_in_use_is_a_clear_error(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["ui", "--store", f"sqlite:///{home}/runs.sqlite", "--port", str(port)])
    assert result.exit_code == 2
    assert f"--port: {port} cannot be used: Address already in use" in result.output


# --- in a real browser while a real sweep trains ---------------------------------------------------

LIVE_SWEEP = """
name = "live"
seeds = [0, 1]

[base]
data = { dataset = "mnist-sample", train_limit = 1024, test_limit = 128, val = 0.05 }
model = { name = "book_cnn" }
train = { optimizer = "adam", lr = 0.003, epochs = 8, batch_size = 64, eval_test = false }

[grid]
"train.lr" = [0.003, 0.001]
"""
PLOTTED_EPOCHS = ("() => (document.getElementById('curves-chart').data || [])"
                  ".reduce((n, t) => n + t.x.length, 0)")


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read() if proc.stdout else ""


def _wait_ok(base: str, path: str, timeout: float = 60) -> None:
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        finally:
            conn.close()
        time.sleep(0.3)
    raise AssertionError(f"{path} did not answer 200 within {timeout}s")


def _status(base: str, path: str) -> int:
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)  # sent as written: http.client does not resolve dot segments
        return conn.getresponse().status
    finally:
        conn.close()


def test_dashboard_follows_a_training_sweep_in_chromium(tmp_path):
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed (apt-get install chromium)"
    home = tmp_path / "home"
    with RunStore(root=home) as store:  # the store exists before the UI opens it; one attack-named run
        base = apply_overrides(Experiment().resolved(), {"train.epochs": 3})
        store_run(store, {**base, "name": XSS, "seed": 3}, curves(3, seed=3))
    env = {**os.environ, "CNNLAB_HOME": str(home), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    (tmp_path / "live.toml").write_text(LIVE_SWEEP)
    sweep = _start([sys.executable, "-m", "cnnlab", "sweep", str(tmp_path / "live.toml"), "--workers", "1",
                    "--threads", "1", "--quiet"], env)
    ui = _start([sys.executable, "-m", "cnnlab", "ui", "--port", "0"], env)
    errors: list[str] = []
    page_errors: list[str] = ["not reached"]
    foreign: list[str] = []
    dialogs: list[str] = []
    try:
        assert ui.stdout is not None
        first = ui.stdout.readline()
        assert "listening" in ui.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert match, first
        base = match.group(0)
        _wait_ok(base, "/api/sweeps/live")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: None if r.url.startswith(base) else foreign.append(r.url))
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

                page.goto(base + "sweeps/live")
                page.evaluate("window.notReloaded = true")
                page.wait_for_function(f"() => ({PLOTTED_EPOCHS})() > 0", timeout=90_000)
                seen = page.evaluate(PLOTTED_EPOCHS)
                page.wait_for_function(f"() => ({PLOTTED_EPOCHS})() > {seen}", timeout=90_000)
                assert page.evaluate("window.notReloaded") is True  # it grew without a reload
                assert page.locator("#counts").inner_text().startswith("4 runs")

                page.locator("#cells a").first.click()
                page.wait_for_url(re.compile(r"/runs/r[0-9a-f]{8}$"))
                page.wait_for_selector("#acc-chart .main-svg")
                page.wait_for_selector("#inspect img", timeout=120_000)  # drawn once the run finishes
                page.wait_for_function("() => [...document.querySelectorAll('#inspect img')]"
                                       ".every(img => img.complete && img.naturalWidth > 0)")
                assert "train.lr" in page.locator("#config").inner_text()

                page.goto(base)
                page.wait_for_selector("#runs tbody tr")
                assert page.locator("td.name", has_text=XSS).count() == 1  # shown as text
                for box in page.locator("#runs tbody input[type=checkbox]").all()[:2]:
                    box.check()
                page.locator("#compare").click()
                page.wait_for_url(re.compile(r"/compare\?runs="))
                page.wait_for_selector("#differ thead th a")
                assert page.locator("#differ thead th a").count() == 2
                page.wait_for_selector("#cmp-acc-chart .main-svg")
                page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

                page_errors = list(errors)  # the 404 below is logged by the browser, as it should be
                response = page.goto(base + "files/%2e%2e/%2e%2e/etc/passwd")
                assert response is not None and response.status == 404
            finally:
                browser.close()
        for path in TRAVERSALS:
            assert _status(base, path) == 404, path
    finally:
        ui_output = _stop(ui)
        sweep_output = _stop(sweep)
    assert page_errors == [], ui_output
    assert dialogs == []
    assert foreign == []
    assert "Traceback" not in ui_output, ui_output
    assert "Traceback" not in sweep_output, sweep_output  # finished, or stopped by us


# --- on a real PostgreSQL server ------------------------------------------------------------------

PG_SWEEP = """
name = "shared"
seeds = [0, 1]

[base]
data = { dataset = "mnist-sample", train_limit = 256, test_limit = 64, val = 0.05 }
model = { name = "book_cnn" }
train = { optimizer = "adam", lr = 0.003, epochs = 2, batch_size = 32, eval_test = false }

[grid]
"train.lr" = [0.003, 0.001]
"""


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found")
def test_postgres_store_and_shared_sweep_are_shown_read_only(postgres, tmp_path):  # noqa: F811
    """A sweep queued in PostgreSQL (no worker yet: every cell pending) and runs in the same
    database: the dashboard shows both and the server refuses its writes."""
    sweep_file = tmp_path / "shared.toml"
    sweep_file.write_text(PG_SWEEP)
    queued = runner.invoke(app, ["sweep", str(sweep_file), "--storage", postgres, "--workers", "0",
                                 "--artifacts", str(tmp_path / "home")])
    assert queued.exit_code == 0, queued.output
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    with RunStore(url, root=tmp_path / "home") as store:
        make_sweep(store, "synthetic", {"train.lr": [1e-3, 1e-1]}, seeds=(0, 1), epochs=4)
    source = open_source(storage=postgres, artifacts=str(tmp_path / "home"))
    with TestClient(create_app(source), base_url=LOCAL) as pg_client:
        runs = pg_client.get("/api/runs").json()["runs"]
        assert len(runs) == 4
        shared = pg_client.get("/api/sweeps/shared").json()
        assert shared["counts"]["pending"] == 4 and shared["total"] == 4
        assert [sum(cell["states"].values()) for cell in shared["cells"]] == [2, 2]
        synthetic = pg_client.get("/api/sweeps/synthetic").json()
        assert len(synthetic["analysis"]["ranking"]) == 2
        assert pg_client.get("/sweeps/shared").status_code == 200
    # The dashboard's connection cannot write: the store says so in one line (a StoreError).
    with pytest.raises(StoreError, match="read-only transaction"):
        source.store.update_run(runs[0]["id"], name="changed")
