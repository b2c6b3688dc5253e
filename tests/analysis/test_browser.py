"""The explorer in a real browser, headless Chromium (Playwright): in JupyterLab, run all cells, see the
controls (with the reference method's paired differences), move the ρ slider with the keyboard, and see
the figure redrawn; without JupyterLab, `imbalance explore` (Voila) serves it on localhost: its tables
carry readers' labels and no NaN/None, and the study dropdown switches studies.

Needs the system Chromium (`apt-get install chromium`: /usr/bin/chromium) and the Python package
`playwright` (its own driver only: never `playwright install`, which downloads a browser).
Skipped without them, saying which is missing; in CI (CI set) their absence is a failure.
"""
import os
import time
from pathlib import Path

import nbformat
import pytest
from browser.jupyterlab import jupyterlab
from browser.study import make_database
from browser.voila import explore_server
from fixtures.kernel import ensure_kernel

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("IMBALANCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]



def _unavailable(reason: str):
    """Skip on a developer's machine; in CI (which installs both, see .ci/run) this is a failure."""
    if os.environ.get("CI"):
        raise RuntimeError(f"the browser test cannot run in CI: {reason}")
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    _unavailable("the Python package playwright is not installed (pip install playwright; never `playwright install`)")
if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
    _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")

WIDGET_IMG = ".widget-output img"
RHO_SLIDER = ".widget-hslider:has(.widget-label:text-is('ρ'))"


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a copy of the notebooks, with a small study database beside them."""
    ensure_kernel()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    for cell in nb.cells:            # no committed outputs: every image on the page comes from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, notebooks / "explore.ipynb")
    make_database(tmp_path / "outputs", "quick", kinds=("step",))   # explore's default: ../outputs, quick
    lib = str(ROOT / "lib")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [lib, os.environ.get("PYTHONPATH")]))}
    with jupyterlab(notebooks, home=tmp_path / "jupyter", env=env) as server:
        yield server


def img_src(page) -> str | None:
    imgs = page.locator(WIDGET_IMG)
    return imgs.first.get_attribute("src") if imgs.count() else None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_explorer_slider_redraws_the_figure(lab, tmp_path):
    base, token = lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab/tree/explore.ipynb?token={token}")
            # the kernel (`imbalance`, from the notebook's metadata) is connected and idle; before it
            # connects the status bar says "No Kernel | Initializing" (and Run All would run one cell)
            page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
            page.get_by_text("Python (imbalance) | Idle").wait_for()
            page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
            page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
            page.wait_for_selector(WIDGET_IMG, state="attached", timeout=90_000)
            page.locator(RHO_SLIDER).first.scroll_into_view_if_needed()   # the notebook renders what is on screen
            before = img_src(page)
            assert before and before.startswith("data:image/png;base64,")
            readout = page.locator(f"{RHO_SLIDER} .widget-readout")
            assert readout.inner_text().strip() == "100"      # explore's first view: ρ = 100, μ = 0.5
            # the controls, not a raw 'VBox(...)': the reference dropdown and the paired differences to it
            assert page.get_by_text("VBox(", exact=False).count() == 0
            page.locator(".widget-dropdown:has(.widget-label:text-is('reference'))").first.wait_for()
            page.get_by_text("paired differences to baseline").filter(visible=True).first.wait_for()   # not the ToC's

            handle = page.locator(f"{RHO_SLIDER} .noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowRight")
            wait_for(lambda: readout.inner_text().strip() == "1000", 15, "the ρ slider to move to 1000")
            after = wait_for(lambda: (src := img_src(page)) and src != before and src, 60,
                             "the explorer figure to be redrawn")
            assert after.startswith("data:image/png;base64,")
            assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()


# --- the explorer without JupyterLab: `imbalance explore`, served by Voila ---------------------------------

STUDY_SELECT = ".widget-dropdown:has(.widget-label:text-is('study')) select"
IMBALANCE_SELECT = ".widget-dropdown:has(.widget-label:text-is('imbalance')) select"
RAW_NAMES = ("roc_auc", "thresholded_accuracy", "balanced_accuracy", "ci_low", "ci_high", "p_holm")


@pytest.fixture
def served(tmp_path):
    """`imbalance explore quick` over a copy of the committed quick study plus a small linear-only study."""
    import shutil
    ensure_kernel()
    outputs = tmp_path / "outputs"
    (outputs / "quick").mkdir(parents=True)
    shutil.copy(ROOT / "outputs" / "quick" / "results.sqlite", outputs / "quick" / "results.sqlite")
    make_database(outputs, "linear-only", kinds=("linear",))
    with explore_server("quick", outputs=outputs, home=tmp_path / "jupyter") as base:
        yield base


def table_cells(page) -> tuple[list[str], list[str]]:
    tables = page.locator(".imbalance-table table")
    return ([t.strip() for t in tables.locator("th").all_inner_texts()],
            [t.strip() for t in tables.locator("td").all_inner_texts()])


@pytest.mark.slow
def test_imbalance_explore_serves_the_explorer_without_jupyterlab(served, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(served + "/")
            page.wait_for_selector(STUDY_SELECT)
            page.wait_for_selector(".imbalance-table table")
            page.wait_for_selector(WIDGET_IMG, state="attached")
            assert page.locator(STUDY_SELECT).input_value() == "quick"
            assert set(page.locator(f"{STUDY_SELECT} option").all_inner_texts()) == {"quick", "linear-only"}
            headers, cells = table_cells(page)
            assert "multi-class ROC AUC" in headers and "accuracy after thresholding" in headers
            assert not [h for h in headers if any(raw in h for raw in RAW_NAMES)], headers
            assert cells and not {"nan", "NaN", "None", "<NA>"} & set(cells)
            assert page.get_by_text("ρ=100, μ=0.5: the methods ranked").count() == 1
            assert page.get_by_text("on the logit scale", exact=False).count() >= 1    # the caption names it

            page.locator(STUDY_SELECT).select_option("linear-only")               # another study
            wait_for(lambda: page.locator(IMBALANCE_SELECT).input_value() == "linear", 60,
                     "the controls of the linear-only study")
            page.get_by_text("ρ=100: the methods ranked").wait_for()
            headers, cells = table_cells(page)
            assert cells and not {"nan", "NaN", "None", "<NA>"} & set(cells)
            assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        except BaseException:
            if page is not None:
                page.screenshot(path=str(tmp_path / "failure.png"))
                print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
