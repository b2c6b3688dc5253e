"""imbalance.analysis.report: the reader's report is a document (no code, no cell markers, no machine paths,
no empty sections), every figure is embedded and captioned with the interval it draws, and what is
missing is named with the params file that produces it."""
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from browser.study import make_database  # noqa: E402
from imbalance.analysis import frames, report, tables  # noqa: E402
from imbalance.registry import get_method, trained_method  # noqa: E402
from scipy import stats as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "outputs" / "quick" / "results.sqlite"
MACHINE_PATHS = ("/work/", "/home/", "/tmp/", "/root/", "/Users/", "C:\\")


class Document(HTMLParser):
    """The report's figures (with their captions), section titles and visible text."""

    def __init__(self):
        super().__init__()
        self.figures, self.sections, self.text, self._in = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self._in.append(tag)
        attrs = dict(attrs)
        if tag == "figure":
            self.figures.append({"id": attrs.get("id"), "img": None, "caption": ""})
        if tag == "img" and self.figures:
            self.figures[-1]["img"] = attrs.get("src", "")

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if "style" in self._in:
            return
        if "figcaption" in self._in:
            self.figures[-1]["caption"] += data
        if self._in and self._in[-1] == "h2":
            self.sections.append(data)
        self.text.append(data)


def parse(html: str) -> Document:
    doc = Document()
    doc.feed(html)
    return doc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A synthetic study of every kind (3 repeats per point: intervals exist) and its report."""
    outputs = tmp_path_factory.mktemp("outputs")
    make_database(outputs, "tiny", kinds=("step", "linear", "graded", "imagenet"))
    path = report.write_report("tiny", outputs)
    return outputs, path, path.read_text()


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """A synthetic step study with 2 repeats per point (no interval can exist) and its report."""
    outputs = tmp_path_factory.mktemp("two")
    make_database(outputs, "two", kinds=("step",), repeats=2)
    path = report.write_report("two", outputs)
    return outputs, path, path.read_text()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The committed quick study (3 repeats, confusion matrices stored), reported into a copy (never retrained)."""
    outputs = tmp_path_factory.mktemp("quick-outputs")
    (outputs / "quick").mkdir()
    shutil.copy(QUICK, outputs / "quick" / "results.sqlite")
    path = report.write_report("quick", outputs)
    return outputs, path, path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny", "quick"])
def test_report_is_a_document_without_code_markers_or_machine_paths(which, request):
    outputs, path, html = request.getfixturevalue(which)
    assert path == outputs / which / "report.html"
    assert html.lstrip().startswith("<!DOCTYPE html>")
    for code in ("NBVAL", "jp-CodeCell", "jp-InputArea", "input_prompt", "In&nbsp;[", "# %%", "import imbalance",
                 "from imbalance", "<pre"):
        assert code not in html, f"{code!r} in the report"
    for machine in (*MACHINE_PATHS, str(outputs)):
        assert machine not in html, f"an absolute path {machine!r} in the report"
    assert "<script" not in html and "http://" not in html and "https://" not in html   # readable offline


@pytest.mark.parametrize("which", ["tiny", "quick"])
def test_every_figure_is_embedded_captioned_and_saved_without_none(which, request):
    outputs, _, html = request.getfixturevalue(which)
    doc = parse(html)
    assert len(doc.figures) >= 6
    saved = {p.stem for p in (outputs / which / "figures").glob("*.png")}
    for figure in doc.figures:
        assert figure["img"].startswith("data:image/png;base64,") and len(figure["img"]) > 2000
        assert len(figure["caption"].split()) >= 12, f"{figure['id']}: caption {figure['caption']!r}"
        assert figure["id"] in saved and (outputs / which / "figures" / f"{figure['id']}.svg").is_file()
    assert not any("None" in name for name in saved), sorted(saved)


def test_report_top_says_what_was_run(quick):
    _, _, html = quick
    doc = parse(html)
    assert doc.sections[0] == "What was run"
    text = " ".join(doc.text)
    records, _ = frames.load_study("quick", ROOT / "outputs")
    for fact in ("10, 100, 400", "0.2, 0.5", "lenet5-mnist: 10,000", str(records["git_rev"].iloc[0]),
                 records["versions"].iloc[0]["imbalance"], "cpu", "baseline, ros, rus"):
        assert fact in text, fact
    post_hoc = records["method"].str.endswith(("-thresh", "-la", "-tau-norm"))
    trained = records[~post_hoc]
    assert f"{len(trained)} ({int(trained['diverged'].sum())} diverged); {int(post_hoc.sum())} post-hoc rows" in text
    # iterations are the study's, not where a diverged network stopped, which is said apart
    stopped = trained.loc[trained["diverged"] > 0, "iterations"].astype(int).tolist()
    # a second stage's records count its own updates (crt: a ninth of 200, 22): the study's length is the others'
    second = records["method"].map(lambda m: get_method(trained_method(m)).stage2 is not None)
    assert sorted(set(records.loc[second & records["method"].str.startswith("crt"), "iterations"])) == [22]
    full = sorted(set(records.loc[(records["diverged"] == 0) & ~second, "iterations"].astype(int)))
    assert full == [200]
    said = "200 (the paper's recipe lenet5-mnist: 10,000; this study ran 2.0% of it)"
    stopped = sorted(set(stopped))      # a retrain elsewhere may diverge other networks, or none
    assert said in text
    if not stopped:
        assert "diverged networks stopped" not in text
    else:
        assert f"{said}; diverged networks stopped " + (f"at {stopped[0]:,}" if len(stopped) == 1 else
                                                         f"between {stopped[0]:,} and {stopped[-1]:,}") in text


def test_conclusions_table_comes_right_after_what_was_run(quick):
    _, _, html = quick
    doc = parse(html)
    assert doc.sections[:3] == ["What was run", "The paper's conclusions, checked on this study",
                                "Recommendations: which method, where"]
    text = " ".join(doc.text)
    for check in ("C1", "C4", "C7", "not enough data", "Oversampling does not overfit"):
        assert check in text, check


@pytest.mark.slow
def test_two_repeats_give_no_interval_but_say_too_few(two):
    """n=2 per point: no interval anywhere, and the report says why."""
    _, _, html = two
    doc = parse(html)
    text = " ".join(doc.text)
    assert "n=2: too few repeats" in text
    assert "student-t" not in text and "bca-bootstrap" not in text     # the interval names of imbalance.analysis.stats
    band_captions = [f["caption"] for f in doc.figures if f["id"].startswith(("fig3", "fig4", "fig6"))]
    assert band_captions and all("no interval is drawn" in c and "n = 2" in c for c in band_captions)


def test_three_repeats_captions_name_the_t_interval_and_pin_it(tiny):
    outputs, _, html = tiny
    doc = parse(html)
    fig3 = next(f for f in doc.figures if f["id"] == "fig3_auc_vs_rho_mnist-sample")
    assert "95% logit-t interval" in fig3["caption"] and "n = 3" in fig3["caption"]
    # the table's interval of one method's mean is scipy's t interval of its 3 networks on the logit scale
    # (delta method: logit(u) +- t se / (u (1 - u))), mapped back, so a ROC AUC interval stays in [0, 1]
    from scipy.special import expit, logit
    records, _ = frames.load_study("tiny", outputs)
    point = records[(records["point_id"] == "step_rho=100_mu=0.5")]
    row = tables.mean_intervals(point, metric="roc_auc").set_index("method").loc["ros"]
    values = point.loc[point["method"] == "ros", "roc_auc"].to_numpy()
    u = values.mean()
    half = st.t.ppf(0.975, len(values) - 1) * st.sem(values) / (u * (1 - u))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expit(logit(u) - half), expit(logit(u) + half)),
                                                            abs=1e-12)
    assert row["interval_method"] == "logit-t"


def test_recommendations_name_the_winner_per_point(tiny):
    _, _, html = tiny
    doc = parse(html)
    assert "Recommendations: which method, where" in doc.sections
    text = " ".join(doc.text)
    # the synthetic study's best method everywhere is ros (smallest penalty)
    assert re.search(r"ρ=100, μ=0\.5\s*ros", text)
    assert any(f["id"] == "winners_mnist-sample_step" for f in doc.figures)
    assert "paired-t" in text                       # the test used with 3 repeats


def test_sections_without_data_are_left_out_and_the_missing_line_names_params(two):
    _, _, html = two
    doc = parse(html)
    ids = {f["id"] for f in doc.figures}
    assert not ids & {"fig5_linear", "fig7_graded", "table4_imagenet"}       # no such records
    for section in doc.sections:
        assert section.strip()
    missing = re.search(r'<p class="missing">(.*?)</p>', html, re.S).group(1)
    for params in ("params/mnist/linear.yaml", "params/mnist/graded.yaml", "params/imagenet/subsets.yaml"):
        assert params in missing
    assert "confusion matri" in missing
    assert html.count('class="missing"') == 1


def test_the_hardest_point_gets_a_confusion_matrix_per_method(quick):
    """The quick study's records store confusion matrices: one figure at the point where baseline's mean ROC AUC
    is lowest, one panel per method, and no 'confusion' entry in the missing line."""
    outputs, _, html = quick
    records, _ = frames.load_study("quick", outputs)
    hardest = records[records["method"] == "baseline"].groupby("point_id")["roc_auc"].mean().idxmin()
    figures = [f for f in parse(html).figures if f["id"].startswith("confusion")]
    assert [f["id"] for f in figures] == [f"confusion_mnist-sample_{hardest.replace('=', '-')}"]
    assert hardest in figures[0]["caption"] and "the diagonal is per-class recall" in figures[0]["caption"]
    missing = re.search(r'<p class="missing">(.*?)</p>', html, re.S)
    assert missing is None or "confusion" not in missing.group(1)


def test_every_kind_of_record_gets_its_figure(tiny):
    _, _, html = tiny
    ids = {f["id"] for f in parse(html).figures}
    assert {"fig1_profiles", "fig3_auc_vs_rho_mnist-sample", "fig4_auc_vs_mu_mnist-sample", "fig5_linear",
            "fig6_thresholding_mnist-sample", "fig7_graded", "fig8_curves", "table4_imagenet",
            "recall_vs_class_size_mnist-sample"} <= ids


def test_the_report_leaves_the_database_as_it_was(quick):
    outputs, _, _ = quick
    folder = outputs / "quick"
    assert (folder / "results.sqlite").read_bytes() == QUICK.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["figures", "report.html", "results.sqlite"]   # no -wal/-shm


def test_write_report_needs_a_database(tmp_path):
    with pytest.raises(FileNotFoundError, match="imbalance run"):
        report.write_report("nothing", tmp_path)


def test_a_report_with_companion_studies_checks_the_cross_study_conclusions_on_them():
    from imbalance.analysis import conclusions
    from test_conclusions import hurts, study
    step = study(hurts(0.03), mus=(0.5,), methods=("baseline",), repeats=3)
    linear = study(hurts(0.005), imbalance="linear", name="linear", methods=("baseline",), repeats=3, seed=1)

    def c3_row(**others):
        doc = report.build_report("s", step, others=others)
        section = next(s for s in doc.sections if s.title.startswith("The paper's conclusions"))
        return next(b for b in section.blocks if "<table" in b), section.blocks[0]

    alone, _ = c3_row()
    together, intro = c3_row(linear=linear)
    expected = conclusions.check_c3(step, others=[linear])
    assert expected.verdict == "supported" and conclusions.check_c3(step).verdict == "not enough data"
    assert "read together with linear" in intro
    gaps = conclusions.design_gaps(step, others=[linear])
    assert "C3" not in gaps and "C2" in gaps          # step + linear: C3 testable; one dataset: C2 is not
    table = conclusions.conclusions_table([r for r in conclusions.check_all(step, others=[linear])
                                           if r.id not in gaps])
    assert report.table_html(table[["conclusion", "title", "verdict", "outcomes", "needs"]]) == together
    assert together != alone


def test_a_long_tailed_study_is_answered_on_balanced_accuracy_beside_roc_auc(tmp_path):
    """The long-tail literature reports balanced accuracy: an exponential study's recommendations give its
    point-by-point answers on it too, each sentence the one answers.point_sentences writes; a step study's do not."""
    from browser.study import all_records
    from imbalance.analysis import answers
    long_tailed = frames.records_frame([{**r, "study": "lt"} for r in all_records(kinds=("exponential",))])
    step = frames.records_frame([{**r, "study": "st"} for r in all_records(kinds=("step",))])

    def section(records):
        doc = report.build_report("x", records)
        return "".join(next(s for s in doc.sections if s.title.startswith("Recommendations")).blocks)

    html_lt, html_step = section(long_tailed), section(step)
    expected = answers.point_sentences(long_tailed, metric="balanced_accuracy", margin=0.01)["sentence"]
    assert len(expected) == 2
    for sentence in expected:
        assert report.esc(sentence) in html_lt
    assert "exponential imbalance: balanced accuracy</h3>" in html_lt
    assert "the measure the long-tail literature reports" in html_lt
    assert "the measure the long-tail literature reports" not in html_step


def test_run_table_counts_done_grid_points_against_the_grid(tmp_path):
    """The database stores done points only: given the grid's size, the table says how many of it are done."""
    from imbalance.study.store import Store
    make_database(tmp_path, "part", kinds=("step",))
    with Store(tmp_path / "part" / "results.sqlite") as store:
        records = frames.records_frame(store.records_frame("part"))
        seconds = report.point_seconds(store, "part")
    done = records["point_id"].nunique()
    assert done == len(seconds) > 1

    def grid_row(**kw):
        table = report.run_table(records, {}, seconds, **kw)
        return table.loc[table[""] == "grid points", "this study"].item()
    assert grid_row() == grid_row(grid_points=done) == f"{done}"
    assert grid_row(grid_points=done + 2) == f"{done} done of {done + 2}"


def test_progress_sentence_names_the_points_done_and_left_or_nothing_when_complete():
    assert report.progress_text(4, 4) is None and report.progress_text(4, None) is None
    assert report.progress_text(1, 2) == (
        "This study is not complete: 1 of 2 grid points are done. Every table, verdict and figure below reads the "
        "done points only; the runner resumes the point left, and this report is rebuilt then.")
    assert "resumes the points left" in report.progress_text(3, 6)


@pytest.mark.slow
def test_report_of_a_study_not_complete_says_so_before_what_was_run_table(two):
    outputs, _, html = two
    assert "not complete" not in html          # built without the grid's size: nothing claimed
    doc = parse(report.study_report("two", outputs, save_figures=False, grid_points=99).html())
    text = " ".join(doc.text)
    assert doc.sections[0] == "What was run"
    done = frames.load_study("two", outputs)[0]["point_id"].nunique()
    said = text.index(f"This study is not complete: {done} of 99 grid points are done.")
    assert said < text.index(f"{done} done of 99")
