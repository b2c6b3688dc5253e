"""imbalance.analysis.explorer on a small synthetic study: the widgets' options and first view, the ranking
and the paired differences at a grid point, the figure (class counts on a log axis; '-thresh'
methods out of ROC AUC unless named), and the widget opening ready on the committed quick study."""
import matplotlib
import matplotlib.text

matplotlib.use("Agg")

import re  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from browser.study import all_records, make_database  # noqa: E402
from fixtures.figures import colour, data_colours, texts  # noqa: E402
from imbalance.analysis import explorer, frames, plots, stats, tables  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

POINT = dict(dataset="mnist-sample", imbalance="step", rho=100, mu=0.5)


@pytest.fixture(scope="module")
def records():
    return frames.records_frame(all_records())


def test_explorer_figure_draws_and_saves(records, tmp_path):
    fig = explorer.explorer_figure(records, **POINT)
    assert isinstance(fig, Figure) and plots.figure_message(fig) is None
    shown = texts(fig)
    for word in ("ρ", "μ", "class counts", "best first"):
        assert word in shown, f"{word!r} not in {shown[:500]!r}"
    png, svg = plots.save_figure(fig, tmp_path, "explorer")
    assert png.stat().st_size > 2000 and "<svg" in svg.read_text()


def test_explorer_figure_without_records_names_the_params_file():
    fig = explorer.explorer_figure([], dataset=None, imbalance="step", rho=100, mu=0.5)
    message = plots.figure_message(fig)
    assert message is not None and "params/quick.yaml" in message and "imbalance run" in message


def test_explorer_answers_which_method_at_rho_100_half_minority(records):
    choice = explorer.explorer_defaults(records, rho=100, mu=0.5)
    assert choice == {**POINT, "methods": None}          # all methods, none named
    table = explorer.explorer_table(records, **choice)
    assert table.index[0] == "ros"           # the synthetic study's best method there
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert {"roc_auc ci_low", "roc_auc ci_high", "thresholded_accuracy"} <= set(table.columns)
    assert "baseline-thresh" in table.index  # the table keeps it: its accuracy differs
    nowhere = explorer.explorer_table(records, dataset="mnist-sample", imbalance="step", rho=7, mu=0.5)
    assert nowhere.empty
    fig = explorer.explorer_figure(records, dataset="mnist-sample", imbalance="step", rho=7, mu=0.5)
    assert "no records at ρ=7" in texts(fig)


def test_explorer_options(records):
    options = explorer.explorer_options(records, dataset="mnist-sample", imbalance="step")
    assert options["rhos"] == [10, 100, 1000] and options["mus"] == [0.2, 0.5]
    assert options["levels"] == [1, 10, 100]
    assert "baseline-thresh" in options["methods"]
    assert set(options["datasets"]) == {"mnist-sample", "imagefolder"}
    linear = explorer.explorer_options(records, dataset="mnist-sample", imbalance="linear")
    assert linear["mus"] == [] and linear["rhos"] == [10, 100]
    fig = explorer.explorer_figure(records, dataset="mnist-sample", imbalance="linear", rho=10, mu=None)
    assert "μ applies to step imbalance only" in texts(fig)


def test_explorer_figure_leaves_thresholding_out_of_roc_auc_only(records):
    thresh = colour(plots.PALETTE["baseline-thresh"])
    auc = explorer.explorer_figure(records, **POINT, metric="roc_auc")
    assert "baseline-thresh" not in texts(auc) and thresh not in data_colours(auc)
    assert plots.THRESH_NOTE in texts(auc) and "ros" in texts(auc)
    for metric in ("accuracy", "thresholded_accuracy"):
        fig = explorer.explorer_figure(records, **POINT, metric=metric)
        assert "baseline-thresh" in texts(fig) and thresh in data_colours(fig), metric
        assert plots.THRESH_NOTE not in texts(fig)
    named = explorer.explorer_figure(records, **POINT, metric="roc_auc", methods=["baseline", "baseline-thresh"])
    assert "baseline-thresh" in texts(named) and plots.THRESH_NOTE not in texts(named)


# --- paired differences, the log axis, and the widget on the committed quick study ------------------

ROOT = Path(__file__).resolve().parents[2]


def test_explorer_paired_is_stats_paired_differences_at_the_point(records):
    table = explorer.explorer_paired(records, **POINT, reference="ros")
    point = records[(records.point_id == "step_rho=100_mu=0.5") & records.level.isna()
                    & (records.dataset == "mnist-sample")]
    expected = stats.paired_differences(point, reference="ros", methods=["baseline", "rus", "two-phase-ros", "ros"])
    expected = expected.set_index("method")
    assert list(table.index) == list(expected.index) == ["baseline", "rus", "two-phase-ros"]   # no '-thresh' in ROC AUC
    assert np.allclose(table["roc_auc − ros"], expected["mean_difference"].round(4))
    assert list(table["verdict"]) == list(expected["verdict"]) and set(table["verdict"]) <= set(stats.VERDICTS)
    assert (table["margin"] == 0.005).all()
    assert (table["roc_auc − ros"] < 0).all()           # ros is the synthetic study's best method
    assert explorer.explorer_paired(records, **POINT, reference="ros-thresh").empty   # not run at this point


def test_explorer_draws_class_counts_on_a_log_axis(records):
    fig = explorer.explorer_figure(records, **{**POINT, "rho": 1000})
    counts_ax = fig.axes[0]
    assert counts_ax.get_yscale() == "log"
    # 1-example classes show: every bar reaches its count from below 1 (bars start at 0.5 on the log axis)
    assert counts_ax.get_ylim()[0] <= min(p.get_y() for p in counts_ax.patches) < 1
    assert 1 <= min(p.get_y() + p.get_height() for p in counts_ax.patches)


def widgets_of(box) -> dict:
    """Every described widget under `box`, by description (first one wins)."""
    found, stack = {}, [box]
    while stack:
        w = stack.pop(0)
        if getattr(w, "description", None):
            found.setdefault(w.description, w)
        stack.extend(getattr(w, "children", ()))
    return found


def test_explorer_opens_ready_on_the_quick_study():
    box = explorer.explore("quick", ROOT / "outputs")
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert not bundle["text/plain"].startswith("VBox(")            # a static viewer shows the first view instead
    assert "data:image/png;base64," in bundle["text/html"] and "ρ=100, μ=0.5" in bundle["text/html"]
    controls = widgets_of(box)
    assert {"study", "dataset", "imbalance", "ρ", "μ", "metric", "reference"} <= set(controls)
    assert controls["ρ"].value == 100 and controls["μ"].value == 0.5 and controls["reference"].value == "baseline"
    assert controls["study"].value == "quick" and "mnist-step" in controls["study"].options
    controls["reference"].value = "ros"                            # redraws without error
    controls["ρ"].value = 400


def test_the_study_is_a_dropdown_of_the_studies_with_a_database(tmp_path):
    make_database(tmp_path, "quick", kinds=("step",))
    make_database(tmp_path, "linear-only", kinds=("linear",))
    (tmp_path / "not-run").mkdir()                                # no results.sqlite: not offered
    assert explorer.studies_under(tmp_path) == ["linear-only", "quick"]
    box = explorer.explore("quick", tmp_path)
    study = widgets_of(box)["study"]
    assert list(study.options) == ["linear-only", "quick"] and study.value == "quick"
    assert widgets_of(box)["imbalance"].value == "step"
    study.value = "linear-only"                                   # the controls are rebuilt for that study
    rho = widgets_of(box)["ρ"]
    assert widgets_of(box)["imbalance"].value == "linear" and [v for _, v in rho.options] == [10, 100]
    missing = explorer.explore("not-run", tmp_path)                # offered the others, told why
    assert widgets_of(missing)["study"].value is None and "has no records" in missing._repr_mimebundle_()["text/html"]


def test_the_tables_shown_are_documents_without_nan_none_or_raw_names(records):
    shown = explorer._tables_html(records, {**POINT, "methods": None, "metric": "roc_auc"}, reference="baseline")
    cells = re.findall(r"<t[dh]>(.*?)</t[dh]>", shown)
    assert cells and not {"nan", "NaN", "None", "<NA>", "&lt;NA&gt;"} & set(cells)
    for raw in ("thresholded_accuracy", "roc_auc", "ci_high", "p_holm"):
        assert raw not in shown, raw
    assert "accuracy after thresholding" in shown and "multi-class ROC AUC" in shown
    assert re.search(r"\[0\.\d{4}, 0\.\d{4}\]", shown) and "on the logit scale" in shown


def test_the_figure_is_readable_at_widget_width(records):
    """The smallest text, shown 960 px wide (a notebook's or Voilà's output area), is at least 10 px high."""
    fig = explorer.explorer_figure(records, **POINT)
    smallest = min(t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text())
    width_px = 960
    assert smallest / 72 * width_px / fig.get_figwidth() >= 10, (smallest, fig.get_figwidth())


def test_explore_without_records_names_the_params_file(tmp_path):
    shown = explorer.explore("nothing", tmp_path)._repr_mimebundle_()
    assert "params/quick.yaml" in shown["text/plain"] and "imbalance run" in shown["text/plain"]
    with pytest.raises(ValueError, match="metric must be one of"):
        explorer.explore("quick", tmp_path, metric="auc")


# --- `imbalance explore`: which study, which notebook, which server ---------------------------------------

def test_imbalance_explore_opens_a_params_files_study_or_a_named_one(tmp_path, capsys):
    import nbformat
    from fixtures.kernel import ensure_kernel
    from imbalance import cli
    ensure_kernel()
    make_database(tmp_path, "quick", kinds=("step",))
    assert cli.explorer_study(str(ROOT / "params" / "quick.yaml"), tmp_path) == "quick"
    assert cli.explorer_study("quick", tmp_path) == "quick"
    with pytest.raises(ValueError, match=r"study 'mnist-step' has no results under .*studies there: quick"):
        cli.explorer_study("mnist-step", tmp_path)
    assert cli.main(["explore", "nowhere.yaml", "--outputs", str(tmp_path)]) == 2
    assert "nowhere.yaml: no such params file" in capsys.readouterr().err
    nb_path = cli.explorer_notebook("quick", tmp_path, ROOT / "notebooks", tmp_path, kernel="imbalance")
    nb = nbformat.read(nb_path, as_version=4)
    tags = [tuple(c.metadata.get("tags", ())) for c in nb.cells]
    injected = nb.cells[tags.index(("injected-parameters",))]
    assert tags.index(("injected-parameters",)) == tags.index(("parameters",)) + 1
    assert injected.source == f"study = 'quick'\noutputs_dir = {str(tmp_path.resolve())!r}"
    assert nb.metadata["kernelspec"]["name"] == "imbalance"            # the venv's own kernel
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    with pytest.raises(ValueError, match="--kernel python-nowhere: no such Jupyter kernel"):
        cli.explorer_notebook("quick", tmp_path, ROOT / "notebooks", tmp_path, kernel="python-nowhere")
    command = cli.voila_command(nb_path, port=8999, open_browser=False)
    assert command[1:3] == ["-m", "voila"] and "--Voila.ip=127.0.0.1" in command and "--port=8999" in command
