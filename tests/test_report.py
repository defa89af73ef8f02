"""`cnnlab report`: one self-contained HTML file and Markdown with PNGs, escaped run text, statuses
shown, the page in a real browser, the inspection hook, and an end-to-end report of two real tiny runs."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from cnnlab.analyze.synthetic import curves, make_sweep, store_run
from cnnlab.cli import app
from cnnlab.config import Experiment, apply_overrides
from cnnlab.files import OUTPUT_MARKER
from cnnlab.report import ReportFigure, Section, sections
from cnnlab.store import RunStore

XSS = "<script>alert(1)</script>"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
runner = CliRunner()


def build_store(root: Path) -> Path:
    """A sweep of 8 runs (2 optimizers × 2 learning rates × 2 seeds, some diverging), a run named like
    an attack, a failed run with markup in its error, and a one-seed sweep."""
    with RunStore(root=root) as store:
        make_sweep(
            store,
            "study",
            {"train.optimizer": ["adam", "sgd"], "train.lr": [1e-3, 1e-1]},
            seeds=(0, 1),
            epochs=8,
        )
        base = apply_overrides(
            Experiment().resolved(), {"train.optimizer": "adam", "train.lr": 1e-3, "train.epochs": 8}
        )
        store_run(store, {**base, "name": XSS, "seed": 7}, curves(8, final_acc=0.97, seed=7), sweep="study")
        failed = store_run(
            store, {**base, "name": "broken", "seed": 9}, curves(3), sweep="study", status="failed"
        )
        store.update_run(failed, error="RuntimeError: <b>boom</b> & more")
        make_sweep(store, "single", {"train.lr": [1e-3, 1e-2]}, seeds=(0,), epochs=5)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("report") / "store")


def report(home: Path, out: Path, *args: str) -> str:
    """Run `cnnlab report` on the store at ``home``; its output."""
    result = runner.invoke(app, ["report", *args, "-o", str(out), "--store", f"sqlite:///{home}/runs.sqlite"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def report_dir(home: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert "index.html" in report(home, out, "study")
    return out


@pytest.fixture(scope="module")
def html(report_dir: Path) -> str:
    return (report_dir / "index.html").read_text(encoding="utf-8")


def test_html_is_one_self_contained_file(report_dir, html):
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", html)
    pngs = sorted(report_dir.glob("fig-*.png"))
    assert images and len(images) == len(pngs)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert '<link rel="stylesheet"' not in html and "<script" not in html
    assert "Content-Security-Policy" in html
    assert not list(report_dir.glob(".*.tmp"))


def test_markdown_refers_to_the_pngs_beside_it(report_dir):
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert linked and all((report_dir / name).read_bytes().startswith(b"\x89PNG") for name in linked)
    assert sorted(linked) == sorted(p.name for p in report_dir.glob("fig-*.png"))
    assert "## Ranking" in markdown and "| rank | configuration |" in markdown


def test_run_derived_text_is_escaped_in_html_and_markdown(report_dir, html):
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>boom</b>" not in html and "&lt;b&gt;boom&lt;/b&gt; &amp; more" in html
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    assert XSS not in markdown and "<b>" not in markdown.replace("\\<b>", "")
    assert "\\<script>alert(1)\\</script>" in markdown and "\\<b>boom\\</b> & more" in markdown
    assert "&lt;" not in markdown and "&gt;" not in markdown and "&amp;" not in markdown


def test_report_contents(html):
    for heading in (
        "Conclusions",
        "What was run",
        "Ranking",
        "Figures",
        "Diagnoses",
        "Run statuses",
        "Method",
    ):
        assert f">{heading}</h2>" in html
    assert (
        'id="ranking"' in html
        and "variance pooled over all configurations" in html
        and "Holm&#39;s method" in html
    )
    assert "Best configuration: optimizer=adam, lr=0.001" in html
    assert "Ranked by best validation accuracy (mean over" in html and "difference −" in html
    assert "Epochs until the training loss (mean over seeds) halved" in html
    assert ">Analysis of variance</h3>" in html and "residual (seed-to-seed)" in html
    assert "Two-way ANOVA of best validation accuracy on optimizer × lr" in html
    assert 'alt="Interaction of' in html
    assert "Loss fall speed: the epoch at which" in html


def test_diverged_and_failed_runs_are_shown(html):
    statuses = html.split('id="statuses-table"', 1)[1]
    assert ">diverged</td>" in statuses
    assert ">failed (not ranked)</td>" in statuses
    assert "became NaN at epoch" in html  # the divergence's evidence in the diagnoses


def test_report_opens_cleanly_in_chromium(report_dir, tmp_path):
    """Debian's chromium through Playwright: no console error, no request leaves the file, every
    figure decodes, the ranking table is there and the attack-shaped run name is plain text."""
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed (apt-get install chromium)"
    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((report_dir / "index.html").as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            interaction = page.locator("img[alt^='Interaction of']").evaluate("e => e.naturalWidth")
            ranking_rows = page.locator("table#ranking tbody tr").count()
            statuses_text = page.locator("#statuses-table").inner_text()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert dialogs == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    assert len(images) == len(list(report_dir.glob("fig-*.png"))) > 0
    assert all(complete and width > 0 for complete, width in images)
    assert interaction > 0  # the two-factor grid's interaction plot is among the figures
    assert ranking_rows == 4
    assert XSS in statuses_text  # shown as text, not run
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_inspection_sections_plug_into_the_hook_and_one_seed_is_stated_plainly(home, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="png")
    seen = []

    def filters(study, store):
        seen.append(study.best_run.id)
        figure = ReportFigure(
            "filters", "Filters of the best run", "first-layer filters <3", buffer.getvalue()
        )
        return [Section("Filters of the best model", ["learned <edges>"], [figure])]

    monkeypatch.setattr(sections, "SECTION_PROVIDERS", [filters])
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_MARKER).write_text("report\n")
    (out / "fig-stale.png").write_bytes(b"from an earlier report")
    report(home, out, "single")
    html = (out / "index.html").read_text()
    assert seen and "Filters of the best model" in html and "learned &lt;edges&gt;" in html
    assert (out / "fig-filters.png").exists()
    assert "![Filters of the best run](fig-filters.png)" in (out / "report.md").read_text()
    assert not (out / "fig-stale.png").exists()  # figures this report does not draw are removed
    assert "no difference between them is tested" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "nosuch"], "no sweep is named 'nosuch'"),
        (["report", "study", "--metric", "top5"], "--metric: 'top5' is not one of"),
        (["report", "study", "--exclude", "train.optimizer=adam,train.lr=0.5"], "matches none of"),
    ],
)
def test_report_errors_exit_2(tmp_path, monkeypatch, args, message):
    home = tmp_path / "store"
    with RunStore(root=home) as store:
        make_sweep(store, "study", {"train.lr": [1e-3, 1e-2]}, seeds=(0,), epochs=3)
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "report").exists()


def test_end_to_end_report_of_two_real_tiny_runs(tmp_path):
    from cnnlab.checks import load_experiment
    from cnnlab.train import train_experiment

    home = tmp_path / "store"
    store = RunStore(root=home)
    ids = []
    for optimizer in ("adam", "sgd"):
        exp = load_experiment(
            overrides=[
                "data.dataset='mnist-sample'",
                "data.train_limit=256",
                "data.test_limit=128",
                "data.val=0.1",
                "train.epochs=1",
                f"train.optimizer='{optimizer}'",
                "train.lr=0.002",
                f"name='tiny-{optimizer}'",
            ]
        )
        ids.append(train_experiment(exp, store, progress=False).record.id)
    report(home, tmp_path / "out", *ids)
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'id="ranking"' in html and "optimizer=adam" in html and "optimizer=sgd" in html
    assert "(one run per configuration)" in html and "within the seed-to-seed spread" not in html
    # The best run has a checkpoint, so the report shows its model from the inside.
    assert "Inside the best model" in html and "conv1" in html
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "Inside the best model" in markdown
    diagnosed = runner.invoke(app, ["diagnose", ids[0], "--store", f"sqlite:///{home}/runs.sqlite"])
    assert diagnosed.exit_code == 0 and ids[0] in diagnosed.output


BROKEN_WORDS_JS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('td, th')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/[\\w.%]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""


@pytest.mark.parametrize("width", [1280, 720])
def test_report_tables_never_break_a_word(report_dir, width):
    """Run ids, statuses, diagnoses and numbers stay whole at desktop and narrow widths (a wide table
    scrolls sideways instead); lines still break at spaces and punctuation."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto((report_dir / "index.html").as_uri())
            page.wait_for_load_state("load")
            broken = page.evaluate(BROKEN_WORDS_JS)
        finally:
            browser.close()
    assert broken == []
