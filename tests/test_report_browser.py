"""The report in a real browser (Chromium driven by Playwright): it fits a laptop and a phone, raises no console
error, requests nothing outside its own file, and the explorer shows the maps of the sample picked."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from xdistill.files import read_json
from xdistill.recipe import default_recipe_path
from xdistill.report import ReportMeta, build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra (pip install -e '.[test]')")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)"),
    pytest.mark.slow,
]

SMALL = yaml.safe_load(default_recipe_path().read_text())
SMALL["seeds"] = [0, 1]
SMALL["teacher"]["train"] = {"steps": 40}
SMALL["training"] = {"steps": 12}
SMALL["students"][2]["methods"][1].update(perturbations=8, bank=16)
SMALL["evaluation"]["max_samples"] = 30


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    recipe = root / "small.yaml"
    recipe.write_text(yaml.safe_dump(SMALL))
    out = root / "run"
    done = subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        yield chromium
        chromium.close()


def open_page(browser, report, width, height=900, path=None):
    page = browser.new_page(viewport={"width": width, "height": height})
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto((path or report / "report" / "report.html").as_uri())
    if path is None:
        page.wait_for_selector("#explorer-table tbody tr")
    return page, problems, requests


TABLES_WIDER_THAN_THEIR_BOX = """[...document.querySelectorAll('.scroll')]
    .filter((box) => box.scrollWidth > box.clientWidth + 1).map((box) => box.scrollWidth + ' > ' + box.clientWidth)"""


@pytest.mark.parametrize("width,height", [(1400, 900), (390, 844)])  # a laptop window, a phone
def test_the_report_fits_the_window_and_stays_inside_its_file(browser, report, width, height, tmp_path):
    page, problems, requests = open_page(browser, report, width, height)
    assert page.locator("#explorer-picked").count() == 1  # the explorer opens on a sample, before any click
    page.locator("#explorer-table tbody tr").nth(2).click()
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # the page never scrolls sideways
    if width >= 1400:  # on a laptop no results table scrolls sideways either (on a phone they scroll in their box)
        assert page.evaluate(TABLES_WIDER_THAN_THEIR_BOX) == []
    pick = read_json(report / "report" / "figures.json")["decision"]["pick"]
    assert page.locator("#decision").get_attribute("data-pick") == (pick or "")
    assert not problems
    own = (report / "report" / "report.html").as_uri()
    assert all(url == own or url.startswith("data:") for url in requests), requests  # nothing leaves the file
    for image in page.locator("img").all():  # every figure readable: drawn at least 250 px wide on a phone
        assert image.bounding_box()["width"] >= min(250, width - 40)
    page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
    page.close()


def shown_maps(page):
    return {
        strip.get_attribute("data-model"): np.array([float(v) for v in strip.get_attribute("data-values").split(",")])
        for strip in page.locator("#explorer-view .strip").all()
    }


def expected_maps(report, seed, student, sample):
    files = np.load(report / f"seed-{seed}" / "evaluation" / f"{student}.samples.npz")
    out = {}
    for model in ("teacher", "student"):
        row = np.abs(files[f"{model}_parts"][sample])
        out[model] = row / row.max()
    return out, files


def test_the_explorer_shows_the_picked_samples_maps_for_each_seed_and_student(browser, report):
    page, problems, _ = open_page(browser, report, 1400)
    page.select_option("#explorer-sort", "loss")
    for seed, student in ((0, "alone"), (1, "kd"), (1, "tsd")):
        page.select_option("#explorer-seed", str(seed))
        page.select_option("#explorer-student", student)
        row = page.locator("#explorer-table tbody tr").nth(4)
        sample = int(row.get_attribute("data-sample"))
        row.click()
        assert int(page.locator("#explorer-picked").get_attribute("data-sample")) == sample
        maps = shown_maps(page)
        expected, files = expected_maps(report, seed, student, sample)
        assert np.abs(maps["teacher"] - expected["teacher"]).max() < 0.01  # int8 quantisation: 1/254
        assert np.abs(maps[student] - expected["student"]).max() < 0.01
        losses = files["student_loss"]
        fifth_highest = np.sort(losses)[::-1][4]
        assert losses[sample] == pytest.approx(fifth_highest, abs=1e-3)  # sorted by loss, highest first
    link = page.locator("#explorer-links a").nth(1).get_attribute("href")
    assert (report / "report" / link).resolve().exists() and link.endswith("tsd.samples.csv")
    assert not problems
    page.close()


def test_per_sample_files_load_in_pandas_and_agree_with_the_summary(report):
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(report / "seed-0" / "evaluation" / "kd.samples.csv")
    summary = read_json(report / "seed-0" / "evaluation" / "kd.json")
    assert len(table) == SMALL["evaluation"]["max_samples"]
    assert table["saliency_spearman"].mean() == pytest.approx(summary["saliency_spearman"]["mean"], abs=1e-5)
    assert (table["teacher_prediction"] == table["student_prediction"]).mean() == pytest.approx(
        summary["agreement"]["mean"]
    )
    assert table["saliency_spearman@saliency"].mean() == pytest.approx(
        summary["explainers"]["saliency"]["saliency_spearman"]["mean"], abs=1e-5
    )


@pytest.mark.parametrize("width,height", [(1400, 900), (390, 844)])
def test_a_data_set_in_a_deep_folder_keeps_the_page_inside_the_window(browser, tmp_path, width, height):
    """The title shows the data set's short name; the full path, in the details, wraps instead of widening the page."""
    spec = "csv:" + "/".join(["a-rather-long-folder-name"] * 12) + "/my_measurements_train.csv"
    result = {
        "student": "kd",
        "student_accuracy": 0.9,
        "teacher_accuracy": 0.95,
        "saliency_spearman": {"mean": 0.5, "std": 0.1, "n": 30},
        "student_params": 100,
        "teacher_params": 1000,
        "class_names": ["a", "b"],
    }
    meta = ReportMeta("deep", spec, "fcn1d", {"explainer": "occlusion", "parts": "window", "k": 3, "target": "teacher"})
    html_path = build_report(tmp_path, meta, [result])
    page, problems, _ = open_page(browser, None, width, height, path=html_path)
    assert page.locator("h1").inner_text() == "deep — csv:my_measurements_train.csv"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.locator("#decision").get_attribute("data-pick") == "kd" and not problems
    page.close()
