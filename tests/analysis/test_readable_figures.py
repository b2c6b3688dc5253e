"""Figures a reader can read (issue 26, item 6): failed networks do not stretch Figures 3/4's y-axes (checked on
the saved PNG, in pixels), every method has its own colour, the paper's methods and today's are drawn apart,
a 1-example class is visible on Figure 1's log axis, and a collapsed network's confusion matrix says so."""
import itertools
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fixtures.figures import texts  # noqa: E402
from imbalance.analysis import frames, plots  # noqa: E402

RHOS, MUS, REPEATS = (10, 100, 1000), (0.5, 0.9), 3
BASE = {"baseline": 0.0, "ros": 0.004, "la-loss": 0.006, "cb-focal": 0.002}


def study_with_failures() -> pd.DataFrame:
    """Survivors' ROC AUC in 0.94-1.0; cb-focal lost 3 networks: two old-style records (ROC AUC exactly 0.5,
    diverged False: constant outputs) and one flagged diverged without a score."""
    rows = []
    for rho, mu, method, repeat in itertools.product(RHOS, MUS, BASE, range(REPEATS)):
        auc = 0.999 - 0.018 * math.log10(rho) * mu + BASE[method] + 0.001 * repeat
        rows.append(dict(study="s", point_id=f"step_rho={rho}_mu={mu}", dataset="mnist-sample", imbalance="step",
                         rho=rho, mu=mu, level=None, method=method, repeat=repeat, roc_auc=min(auc, 1.0),
                         accuracy=auc - 0.05, thresholded_accuracy=auc - 0.03, diverged=False))
    frame = frames.records_frame(rows)
    lost = (frame["method"] == "cb-focal") & (frame["rho"] == 1000) & (frame["mu"] == 0.9)
    frame.loc[lost & (frame["repeat"] < 2), "roc_auc"] = 0.5
    frame.loc[lost & (frame["repeat"] == 2), ["roc_auc", "diverged"]] = [np.nan, 1.0]
    return frame


def survivors_range(frame: pd.DataFrame) -> tuple[float, float]:
    values = frame.loc[frame["roc_auc"] != 0.5, "roc_auc"].dropna()
    return float(values.min()), float(values.max())


@pytest.mark.parametrize("draw", [plots.auc_vs_rho, plots.auc_vs_mu], ids=["figure3", "figure4"])
def test_failed_networks_do_not_squash_the_survivors_band(draw, tmp_path):
    frame = study_with_failures()
    fig = draw(frame, dataset="mnist-sample")
    low, high = survivors_range(frame)
    ax = fig.axes[0]
    y0, y1 = ax.get_ylim()
    assert y0 > 0.9 and y1 <= 1.0 + 0.01                      # the 0.5s are not on the axis
    assert (y1 - y0) <= 2 * (high - low)                       # the axis is the survivors' span, padded
    assert y0 <= low and y1 >= high                            # and holds every survivor
    assert "cb-focal (3 failed)" in texts(fig)                 # the failures are counted ...
    edge = [line for a in fig.axes for line in a.get_lines() if line.get_marker() == "v" and len(line.get_xdata())]
    assert edge                                                # ... and marked at the axis edge

    # the saved PNG, measured in pixels: the methods' lines (their colours' pixels, every panel: y is shared)
    # cover most of a panel's height, where matplotlib's transform of the survivors' means puts them
    png = tmp_path / "fig.png"
    fig.savefig(png, dpi=100)
    image = mpimg.imread(png)[..., :3]
    colours = np.array([plots.PALETTE[m] for m in BASE])
    tops, bottoms, expected = [], [], []
    for panel in [a for a in fig.axes if a.get_lines()]:
        bbox = panel.get_window_extent()                    # display pixels, origin bottom-left
        rows = slice(int(image.shape[0] - bbox.y1) + 2, int(image.shape[0] - bbox.y0) - 2)
        cols = slice(int(bbox.x0) + 2, int(bbox.x1) - 2)
        crop = image[rows, cols]
        match = (np.abs(crop[:, :, None, :] - colours[None, None]) < 0.02).all(-1).any(-1)
        ys = np.flatnonzero(match.any(axis=1))
        if len(ys):
            tops.append(1 - (ys.min() + 2) / bbox.height)   # as fractions of the panel's height from its bottom
            bottoms.append(1 - (ys.max() + 2) / bbox.height)
        means = [line.get_ydata() for line in panel.get_lines() if line.get_marker() not in ("v", "_")]
        values = np.concatenate(means)
        expected += list(panel.transAxes.inverted().transform(
            panel.transData.transform([[1, values.min()], [1, values.max()]]))[:, 1])
    covered = max(tops) - min(bottoms)
    assert covered >= 0.6, f"the methods' band covers {covered:.0%} of the panel's height"
    assert abs(covered - (max(expected) - min(expected))) < 0.1   # the PNG shows what the transform predicts


def test_failures_would_stretch_the_axis_without_the_survivor_rule():
    """The check above can fail: the same frame with the failures counted as scores spans down to 0.5."""
    frame = study_with_failures()
    low, high = survivors_range(frame)
    everything = frame["roc_auc"].dropna()
    assert everything.max() - everything.min() > 2 * (high - low)


def lab(rgb) -> np.ndarray:
    """CIE L*a*b* of an sRGB colour (D65), written from the CIE formulas: a reference independent of matplotlib."""
    c = np.asarray(rgb, dtype=float)
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_registered_method_has_its_own_colour():
    assert set(plots.PALETTE) == set(plots.METHOD_ORDER)
    distances = {(a, b): float(np.linalg.norm(lab(plots.PALETTE[a]) - lab(plots.PALETTE[b])))
                 for a, b in itertools.combinations(plots.PALETTE, 2)}
    closest = min(distances, key=distances.get)
    # ΔE*ab 20: two colours a reader tells apart at a glance (the old palette had ros and baseline-la at 10)
    assert distances[closest] >= 20, f"{closest} are too alike: ΔE {distances[closest]:.1f}"


def test_the_papers_methods_and_todays_are_drawn_apart():
    fig = plots.auc_vs_rho(study_with_failures(), dataset="mnist-sample")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{g}, μ = {m}" for g in ("the paper's methods", "today's methods") for m in MUS]
    paper, today = fig.axes[0], fig.axes[len(MUS)]
    colour = lambda ax: {tuple(np.round(matplotlib.colors.to_rgb(line.get_markeredgecolor()), 4))  # noqa: E731
                         for line in ax.get_lines() if line.get_marker() not in ("v", "_", "None", "")}
    rounded = lambda m: tuple(np.round(plots.PALETTE[m], 4))  # noqa: E731
    assert rounded("baseline") in colour(paper) and rounded("la-loss") not in colour(paper)
    assert rounded("la-loss") in colour(today) and rounded("baseline") not in colour(today)


def test_a_one_example_class_is_a_visible_bar_on_the_log_axis():
    fig, ax = matplotlib.pyplot.subplots()
    plots.profile_bars(ax, [1, 1, 5000, 5000], title="t", log=True, rhos=[5000])
    fig.canvas.draw()
    bar = ax.patches[0].get_window_extent()
    axis = ax.get_window_extent()
    assert bar.height >= 0.05 * axis.height                   # at least 5% of the axis: not a hairline
    assert "1" in [t.get_text() for t in ax.texts]             # and its count is written above it


def test_a_collapsed_networks_confusion_matrix_says_so():
    one_class = [[0, 10, 0], [0, 10, 0], [0, 10, 0]]
    healthy = [[9, 1, 0], [1, 9, 0], [0, 1, 9]]
    frame = frames.records_frame([
        dict(point_id="p", dataset="d", imbalance="step", rho=10, mu=0.5, method=m, repeat=0, roc_auc=auc,
             diverged=False, confusion_matrix=cm, class_counts=[5, 50, 50])
        for m, cm, auc in (("baseline", healthy, 0.9), ("cb-focal", one_class, 0.5))])
    fig = plots.confusion_figure(frame, point_id="p")
    titles = {ax.get_title().split("\n")[0]: ax.get_title() for ax in fig.axes}
    assert "FAILED: collapsed, predicts class 1" in titles["cb-focal"]
    assert titles["baseline"] == "baseline"
