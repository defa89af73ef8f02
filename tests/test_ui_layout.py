"""The dashboard in Debian's chromium on a desktop (1280×800) and a phone (390×844): no page wider than
the screen, every run of a one-epoch sweep and of a comparison drawn, whole-number epoch ticks, tags
shown and filterable, sort and filter kept in the address, running runs' numbers, and the downloads."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest
from playwright.sync_api import Page, sync_playwright
from starlette.testclient import TestClient

from cnnlab.analyze.synthetic import curves, make_sweep, store_run
from cnnlab.config import Experiment, apply_overrides, config_hash
from cnnlab.store import RunStore
from cnnlab.ui import create_app, open_source

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
LONG_NAME = "a-rather-long-run-name-that-people-give-their-experiments-v2"
TRACES_WITH_POINTS = ("id => (document.getElementById(id).data || [])"
                      ".filter(t => t.x.length > 0 && t.mode.includes('markers')).length")
TICKS = "id => [...document.querySelectorAll('#' + id + ' .xtick text')].map(t => t.textContent)"
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A one-epoch sweep of 8 runs, a 9-epoch sweep, two runs with different losses and tags, a run
    with a long name and a run still training (2 of its 4 epochs stored)."""
    root = tmp_path_factory.mktemp("layout") / "store"
    with RunStore(root=root) as store:
        make_sweep(store, "one-epoch", {"train.lr": [1e-3, 1e-2, 1e-1, 0.3]}, seeds=(0, 1), epochs=1)
        make_sweep(store, "longer", {"train.optimizer": ["adam", "sgd"]}, seeds=(0, 1), epochs=9)
        base = apply_overrides(Experiment().resolved(), {"train.epochs": 1})
        mse = store_run(store, {**base, "name": "mse-run", "seed": 1,
                                "train": {**base["train"], "loss": "mse"}},
                        [{**row, "train_loss": row["train_loss"] / 25, "val_loss": row["val_loss"] / 25}
                         for row in curves(1, seed=1)])
        cross = store_run(store, {**base, "name": LONG_NAME, "seed": 2}, curves(1, seed=2))
        store.add_tag(mse, "baseline")
        store.add_tag(cross, "candidate")
        config = apply_overrides(Experiment().resolved(), {"train.epochs": 4, "name": "still-training"})
        live = store.create_run(name="still-training", config=config, config_hash=config_hash(config),
                                cell_hash=config_hash(config, include_seed=False), seed=0, host="synthetic",
                                versions={"cnnlab": "synthetic"})
        for row in curves(4, seed=5)[:2]:
            store.log_epoch(live, int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
    (root / "ids.json").write_text(json.dumps({"mse": mse, "cross": cross, "live": live}))
    return root


@pytest.fixture(scope="module")
def ids(home) -> dict[str, str]:
    return json.loads((home / "ids.json").read_text())


@pytest.fixture(scope="module")
def base(home) -> Iterator[str]:
    env = {**os.environ, "CNNLAB_HOME": str(home)}
    ui = subprocess.Popen([sys.executable, "-m", "cnnlab", "ui", "--port", "0"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert ui.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+/", ui.stdout.readline())
        assert match
        assert "listening" in ui.stdout.readline()
        yield match.group(0)
    finally:
        ui.terminate()
        ui.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _open(browser, viewport: str, url: str, ready: str, errors: list[str]) -> Page:
    page = browser.new_page(viewport=VIEWPORTS[viewport])
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector(ready, timeout=60_000)
    return page


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_page_is_wider_than_the_screen(browser, base, ids, viewport, tmp_path):
    errors: list[str] = []
    pages = {"runs": ("", "#runs tbody tr"), "run": (f"runs/{ids['cross']}", "#acc-chart .main-svg"),
             "sweep": ("sweeps/longer", "#curves-chart .main-svg"),
             "compare": (f"compare?runs={ids['mse']},{ids['cross']},{ids['live']}",
                         "#cmp-acc-chart .main-svg")}
    for name, (path, ready) in pages.items():
        page = _open(browser, viewport, base + path, ready, errors)
        page.wait_for_timeout(300)
        page.screenshot(path=str(tmp_path / f"{name}-{viewport}.png"), full_page=True)
        assert page.evaluate(OVERFLOW) <= 0, f"{name} at {viewport} is wider than the screen"
        page.close()
    assert errors == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_one_epoch_runs_each_show_a_trace_and_epochs_are_whole_numbers(browser, base, ids, viewport):
    errors: list[str] = []
    page = _open(browser, viewport, base + "sweeps/one-epoch", "#curves-chart .main-svg", errors)
    page.wait_for_function(f"() => ({TRACES_WITH_POINTS})('curves-chart') === 8")
    ticks = page.evaluate(TICKS, "curves-chart")
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    page.goto(base + f"compare?runs={ids['mse']},{ids['cross']}")
    page.wait_for_selector("#cmp-loss-chart .main-svg")
    for chart in ("cmp-acc-chart", "cmp-loss-chart"):
        page.wait_for_function(f"() => ({TRACES_WITH_POINTS})('{chart}') === 4")  # 2 runs × train, val
        assert all(re.fullmatch(r"\d+", t) for t in page.evaluate(TICKS, chart))
    page.goto(base + "sweeps/longer")
    page.wait_for_function(f"() => ({TRACES_WITH_POINTS})('curves-chart') === 4")
    ticks = page.evaluate(TICKS, "curves-chart")
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    page.close()
    assert errors == []


def test_compare_normalises_mixed_losses_and_shows_the_final_metrics(browser, base, ids):
    errors: list[str] = []
    url = base + f"compare?runs={ids['mse']},{ids['cross']}"
    page = _open(browser, "desktop", url, "#final tbody tr", errors)
    page.wait_for_selector("#cmp-loss-chart .main-svg")
    title = page.locator("#cmp-loss-chart .gtitle").text_content()
    note = page.locator("#loss-note").inner_text()
    assert "epoch-1" in title and "mean squared error" in note and "cross-entropy" in note
    first = page.evaluate("() => document.getElementById('cmp-loss-chart').data.map(t => t.y[0])")
    assert first == [1, 1, 1, 1]
    table = page.locator("#final").inner_text()
    assert "final val acc" in table and "best val acc" in table and "%" in table
    page.close()
    assert errors == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_tags_are_shown_and_filterable_and_the_filter_is_in_the_address(browser, base, ids, viewport):
    errors: list[str] = []
    page = _open(browser, viewport, base, "#runs tbody tr", errors)
    assert page.locator(f"tr[data-id='{ids['mse']}'] .tag").inner_text() == "baseline"
    total = page.locator("#runs tbody tr").count()
    page.select_option("#tag-filter", "candidate")
    assert page.locator("#runs tbody tr").count() == 1
    assert "tag=candidate" in page.url
    page.reload()
    page.wait_for_selector("#runs tbody tr")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 1")
    assert page.locator("#tag-filter").input_value() == "candidate"
    page.select_option("#tag-filter", "")
    page.fill("#filter", "baseline")  # the text filter reads tags too
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 1")
    page.fill("#filter", "")
    assert page.locator("#runs tbody tr").count() == total
    page.goto(base + f"runs/{ids['mse']}")
    page.wait_for_selector("#summary .tag")
    assert page.locator("#summary .tag").inner_text() == "baseline"
    page.close()
    assert errors == []


def test_every_tag_chosen_after_opening_a_filtered_address_stays_through_the_next_poll(browser, base):
    """The address's filter is applied when the page opens, not again on every refresh."""
    errors: list[str] = []
    page = _open(browser, "desktop", base + "?tag=candidate&status=completed", "#runs tbody tr", errors)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 1")
    for select in ("#tag-filter", "#status-filter"):
        page.select_option(select, "")
    total = page.locator("#runs tbody tr").count()
    assert total > 1
    for _ in range(2):  # the page polls every 2 s while a run trains
        with page.expect_response(lambda response: response.url.endswith("/api/runs"), timeout=15_000):
            pass
        page.wait_for_timeout(300)
    assert page.locator("#tag-filter").input_value() == ""
    assert page.locator("#status-filter").input_value() == ""
    assert page.locator("#runs tbody tr").count() == total
    page.close()
    assert errors == []


def test_status_badges_are_dark_in_dark_mode(browser, base, tmp_path):
    """The dark colours win over the light ones (same selectors): light text on a light badge was
    unreadable. The screenshot is kept in the test's folder to look at."""
    colours = ("el => { const style = getComputedStyle(el); "
               "return [style.backgroundColor, style.color]; }")
    found = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport=VIEWPORTS["desktop"], color_scheme=scheme)
        page.goto(base)
        page.wait_for_selector("#runs tbody tr .s-completed")
        page.screenshot(path=str(tmp_path / f"runs-{scheme}.png"))
        found[scheme] = [page.locator(f"#runs tbody .s-{status}").first.evaluate(colours)
                         for status in ("completed", "running")]
        page.close()
    assert found["light"] == [["rgb(218, 251, 225)", "rgb(26, 127, 55)"],
                              ["rgb(221, 244, 255)", "rgb(9, 105, 218)"]]
    assert found["dark"] == [["rgb(15, 61, 31)", "rgb(86, 211, 100)"],
                             ["rgb(12, 45, 107)", "rgb(121, 192, 255)"]]


def test_sort_headers_work_from_the_keyboard_and_the_sort_is_in_the_address(browser, base):
    errors: list[str] = []
    page = _open(browser, "desktop", base, "#runs tbody tr", errors)
    header = page.locator("#runs th[data-key='best_val_acc'] button")
    header.focus()
    page.keyboard.press("Enter")
    assert page.locator("#runs th[data-key='best_val_acc']").get_attribute("aria-sort") == "ascending"
    page.keyboard.press(" ")
    assert page.locator("#runs th[data-key='best_val_acc']").get_attribute("aria-sort") == "descending"
    assert "sort=best_val_acc" in page.url and "desc=1" in page.url
    page.reload()
    page.wait_for_selector("#runs tbody tr")
    assert page.locator("#runs th[data-key='best_val_acc']").get_attribute("aria-sort") == "descending"
    values = [float(t.rstrip("%")) for t in page.locator("#runs tbody td:nth-child(8)").all_inner_texts()
              if t != "–"]
    assert values == sorted(values, reverse=True)
    dates = page.locator("#runs tbody td:nth-child(12)").all_inner_texts()
    assert dates and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", d) for d in dates)
    page.close()
    assert errors == []


def test_a_running_run_shows_its_numbers_and_no_advice_to_train_as_long_as_it_does(browser, base, ids):
    errors: list[str] = []
    page = _open(browser, "desktop", base, "#runs tbody tr", errors)
    row = page.locator(f"tr[data-id='{ids['live']}']").inner_text()
    assert "2/4" in row and "%" in row
    assert page.locator("#live").is_visible()
    page.goto(base + f"runs/{ids['live']}")
    page.wait_for_selector("#outcome:not(:empty)")
    assert page.locator("#outcome").inner_text().startswith("still training, epoch 2 of 4: ")
    assert "train.epochs=4" not in page.content()
    page.goto(base + "sweeps/longer")  # nothing of this sweep trains: no live badge
    page.wait_for_selector("#cells tbody tr")
    page.wait_for_timeout(500)
    assert not page.locator("#live").is_visible()
    page.close()
    assert errors == []


def test_smoothing_and_log_scale_redraw_the_curves_and_stay_in_the_address(browser, base):
    errors: list[str] = []
    page = _open(browser, "desktop", base + "sweeps/longer", "#curves-chart .main-svg", errors)
    raw = page.evaluate("() => document.getElementById('curves-chart').data[0].y")
    page.locator("#smoothing").fill("0.6")
    smoothed = page.evaluate("() => document.getElementById('curves-chart').data[0].y")
    assert smoothed != raw and smoothed[0] == pytest.approx(raw[0])
    assert "smooth=0.6" in page.url
    page.goto(base + "sweeps/longer?log=1")
    page.wait_for_selector("#log-scale:checked")
    page.close()
    assert errors == []


def test_downloads_of_a_runs_epochs_and_a_sweeps_results(base, ids):
    with urlopen(base + f"api/runs/{ids['cross']}/epochs.csv") as answer:
        assert "attachment" in answer.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(answer.read().decode())))
    assert [row["epoch"] for row in rows] == ["1"]
    with urlopen(base + "api/sweeps/longer/results.json") as answer:
        results = json.loads(answer.read())
    assert len(results) == 4 and {row["train.optimizer"] for row in results} == {"adam", "sgd"}
    with urlopen(base + "api/sweeps/longer/results.csv") as answer:
        header = answer.read().decode().splitlines()[0]
    assert header.startswith("run,configuration,seed,status,epochs,train.optimizer")


def test_the_sweep_page_has_a_slice_per_setting_and_an_interrupted_column(home):
    with TestClient(create_app(open_source(f"sqlite:///{home}/runs.sqlite")),
                    base_url="http://127.0.0.1") as client:  # the Host the dashboard answers to
        data = client.get("/api/sweeps/longer").json()
        page = client.get("/sweeps/longer").text
    analysis = data["analysis"]
    assert analysis["varying"] == ["train.optimizer"]
    assert {run["settings"]["train.optimizer"] for run in analysis["runs"]} == {"adam", "sgd"}
    assert all(run["result"] is not None for run in analysis["runs"])
    assert '<th class="num">interrupted</th>' in page
    ranking = {row["label"]: row["mean"] for row in analysis["ranking"]}
    for cell in data["cells"]:  # the same rounding in both tables
        if cell["label"] in ranking and data["cells_metric"].endswith(analysis["metric"]["column"]):
            assert cell["text"].split(" ± ")[0] == ranking[cell["label"]]
