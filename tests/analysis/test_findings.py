"""The README's "What the study finds" and outputs/README.md are the committed databases' own
numbers: regenerated here, they must equal the committed text, and the verdicts must be those
`imbalance conclusions` prints for the same studies (issue 15)."""
import re
from pathlib import Path

import pytest
from imbalance.analysis import findings
from imbalance.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loaded():
    return findings.load_all()


@pytest.fixture(scope="module")
def studies(loaded):
    return loaded[0]


@pytest.fixture(scope="module")
def earlier(loaded):
    return loaded[1]


@pytest.fixture(scope="module")
def upcoming(loaded):
    return loaded[2]


def test_the_readme_findings_section_is_what_the_committed_databases_give(studies, earlier, upcoming):
    readme = (ROOT / "README.md").read_text()
    assert findings.readme_with_findings(readme, findings.findings_markdown(studies, earlier=earlier,
                                                                            upcoming=upcoming)) == readme, \
        "README.md's findings differ from the databases: run `python -m imbalance.analysis.findings --write`"


def test_the_outputs_index_is_what_the_committed_databases_give(studies, earlier, upcoming):
    assert (ROOT / "outputs" / "README.md").read_text() == findings.index_markdown(
        studies, upcoming=upcoming, earlier=earlier), \
        "outputs/README.md differs from the databases: run `python -m imbalance.analysis.findings --write`"


FASHION_BLOCK = "**The same checks on Fashion-MNIST**"


def _printed_verdicts(capsys) -> dict:
    """{'C1': 'SUPPORTED', ...} from what `imbalance conclusions` just printed."""
    return dict(re.findall(r"^(C\d)  .*: ([A-Z ]+)$", capsys.readouterr().out, flags=re.M))


def _findings_section() -> str:
    return (ROOT / "README.md").read_text().split(findings.BEGIN)[1].split(findings.END)[0]


def _table_verdicts(text: str) -> dict:
    """{'C1': 'supported', ...} from the README table rows in `text`."""
    return dict(re.findall(r"^\| (C\d) .*? \| \*\*([a-z ]+)\*\* \|", text, flags=re.M))


def test_the_readme_verdicts_are_those_imbalance_conclusions_prints(studies, capsys):
    ran = [str(ROOT / s.spec.params) for s in studies if (ROOT / "outputs" / s.study / "results.sqlite").is_file()]
    if not ran or ran[0] != str(ROOT / findings.PRIMARY.params):
        pytest.skip("the primary study has no committed results yet")
    assert main(["conclusions", ran[0], "--outputs", str(ROOT / "outputs"), *(["--with", *ran[1:]] if ran[1:] else [])]) == 0
    printed = _printed_verdicts(capsys)
    table = _table_verdicts(_findings_section().split(FASHION_BLOCK)[0])     # the first table: all seven
    assert len(printed) == 7 and {k: v.lower() for k, v in printed.items()} == table


def test_the_readme_fashion_mnist_verdicts_are_those_imbalance_conclusions_prints_for_its_study(studies, capsys):
    fashion = studies[findings.REPLICATION_SLOT]
    if fashion.records.empty:
        pytest.skip(f"{fashion.study} has no committed results yet")
    assert main(["conclusions", str(ROOT / fashion.spec.params), "--outputs", str(ROOT / "outputs")]) == 0
    printed = _printed_verdicts(capsys)
    table = _table_verdicts(_findings_section().split(FASHION_BLOCK)[1].split("\n\n**")[0])
    assert table == {k: printed[k].lower() for k in findings.SINGLE_STUDY}


def test_the_readme_markers_are_required():
    with pytest.raises(ValueError, match="markers"):
        findings.readme_with_findings("no markers here", "x")


def test_the_recommendation_keeps_ros_where_it_is_equivalent_and_names_a_method_that_beats_it():
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(0)
    rows = []
    for point, rho, crt_gain in (("a", 10.0, 0.0), ("b", 100.0, 0.05)):
        base = 0.9 + rng.normal(0, 0.01, 8)   # 8: Wilcoxon can reach p < 0.05 / 2
        for method, shift in (("ros", 0.0), ("baseline", -0.001), ("crt", crt_gain)):
            for r in range(8):
                rows.append(dict(study="s", point_id=point, dataset="mnist", imbalance="step", rho=rho, mu=0.5,
                                 level=None, method=method, repeat=r, diverged=0,
                                 roc_auc=base[r] + shift + (0.0 if method != "crt" else
                                                            0.002 * r if crt_gain else rng.normal(0, 0.01))))
    frame = pd.DataFrame(rows)
    text = findings._recommendation(frame, findings._point_winners(frame))
    assert text.startswith("oversampling (`ros`) at 1 of 2 points, where it is the winner or equivalent to it; "
                           "elsewhere the winner: `crt` at (ρ 100, μ 0.5) (ros shown worse).")
    assert "not shown either way" in text and "With 8 repeats" in text
    assert "`crt` at (ρ 100, μ 0.5) (+0.0570)" in text and "Holm over the 2 methods compared" in text
    empty = pd.DataFrame(rows[:0], columns=["level", "method"])
    assert findings._recommendation(empty, findings._point_winners(empty)).startswith("not enough data")


# --- one sentence per point (issue 26), recomputed here with scipy alone -----------------------------------

PLAIN_BLOCKS = ((findings.PRIMARY_SLOT, "**Point by point, in plain words**"),
                (findings.REPLICATION_SLOT, "**Point by point on Fashion-MNIST, in plain words**"),
                (findings.NATURAL_SLOT, "**Point by point on CIFAR-10, in plain words**"))
POSTHOC = ("-thresh", "-la", "-tau-norm")


def _holm_by_hand(p: dict) -> dict:
    order, out, running = sorted(p, key=p.get), {}, 0.0
    for i, m in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[m]))
        out[m] = running
    return out


def _verdicts_by_hand(here, *, reference="baseline", margin=0.005, alpha=0.05):
    """{method: (verdict, mean, low, high)} at one point: paired t-test and Student-t 95% interval over the repeats
    both networks finished, TOST against ±margin with scipy's t, each Holm-corrected over the methods tested."""
    from scipy import stats as sps
    import numpy as np
    ref = here[here["method"] == reference].set_index("repeat")["roc_auc"]
    diffs = {}
    for m in sorted(set(here["method"]) - {reference}):
        if m.endswith(POSTHOC):
            continue
        d = (here[here["method"] == m].set_index("repeat")["roc_auc"] - ref).dropna().to_numpy(float)
        diffs[m] = d
    tested = {m: d for m, d in diffs.items() if d.size >= 3}
    se = {m: d.std(ddof=1) / np.sqrt(d.size) for m, d in tested.items()}
    # the declared rules (stats.RULES): paired t-test below 6 pairs, Wilcoxon signed-rank from 6 (a point that
    # --until-decided grew); Student-t interval below 10, BCa bootstrap (9,999 resamples, seed 0) from 10
    p = _holm_by_hand({m: 2 * sps.t.sf(abs(d.mean() / se[m]), d.size - 1) if d.size < 6 else
                       sps.wilcoxon(d).pvalue for m, d in tested.items()})
    q = _holm_by_hand({m: max(sps.t.sf((d.mean() + margin) / se[m], d.size - 1),
                              sps.t.cdf((d.mean() - margin) / se[m], d.size - 1)) for m, d in tested.items()})
    out = {m: ("untested", None, None, None) for m in diffs if m not in tested}
    for m, d in tested.items():
        if d.size < 10:
            half = sps.t.ppf(0.975, d.size - 1) * se[m]
            low, high = d.mean() - half, d.mean() + half
        else:
            mine = here[here["method"] == m].set_index("repeat")["roc_auc"].reindex(ref.index).to_numpy(float)
            ci = sps.bootstrap((mine, ref.to_numpy(float)), lambda x, y, axis=-1: np.mean(x - y, axis=axis),
                               paired=True, vectorized=True, method="BCa", n_resamples=9999,
                               rng=np.random.default_rng(0)).confidence_interval
            low, high = ci.low, ci.high
        shown = (low > 0 or high < 0) and p[m] < alpha
        out[m] = ("better" if shown and d.mean() > 0 else "worse" if shown else
                  "equivalent" if q[m] < alpha else "undecided", d.mean(), low, high)
    return out


def _said(line: str, methods) -> dict:
    """{method: verdict} from one README line, read by the words around each method's name."""
    said = {}
    for part in line.split("; "):
        kind = ("better" if "shown better" in part else "worse" if "shown worse" in part else
                "equivalent" if "practically equivalent" in part else "undecided" if "undecided" in part else
                "untested" if "could not be tested" in part else None)
        for m in methods:
            if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", part.split(" than ")[0]):
                said[m] = kind
    return said


@pytest.mark.parametrize("slot, title", PLAIN_BLOCKS)
def test_each_point_has_one_readme_line_whose_verdicts_scipy_gives_from_the_records(studies, slot, title):
    loaded = studies[slot]
    if loaded.records.empty:
        pytest.skip(f"{loaded.study} has no committed results yet")
    block = _findings_section().split(title, 1)[1].split("\n\n")[1]
    lines = block.splitlines()
    records = loaded.records[loaded.records["level"].isna()]
    points = records.drop_duplicates("point_id").sort_values(["rho", "mu"])
    assert len(lines) == len(points) == len(set(records["point_id"]))      # one line per point, in grid order
    for line, point in zip(lines, points.itertuples()):
        assert line.startswith(f"- At ρ={point.rho:g}, μ={point.mu:g} "), line
        by_hand = _verdicts_by_hand(records[records["point_id"] == point.point_id])
        assert _said(line, by_hand) == {m: v[0] for m, v in by_hand.items()}, line
        if not any(v[0] == "better" for v in by_hand.values()):
            assert "no method is shown better than baseline" in line
        for m, (verdict, mean, low, high) in by_hand.items():
            if verdict in ("better", "worse"):
                assert f"{m} ({mean:+.4f} [{low:+.4f}, {high:+.4f}])" in line, (m, line)


def test_an_unfinished_study_states_its_points_and_the_time_still_needed(tmp_path):
    """outputs/README.md's issue-28 table: the median wall time of the finished points times the points left."""
    import pandas as pd
    grid = list(range(5))
    done = {"a": 600.0, "b": 1200.0, "c": 900.0}          # median 900 s, 2 points left: 30 min
    running = findings.Loaded(findings.NEXT_STUDIES[0], "fashion-step-v2", grid, done,
                              pd.DataFrame({"method": ["baseline"] * 4, "device": ["cpu"] * 4}), pd.DataFrame())
    fresh = findings.Loaded(findings.NEXT_STUDIES[2], "cifar10-lt", [0, 1], {}, pd.DataFrame(), pd.DataFrame())
    text = findings.index_markdown(findings.load(), upcoming=[running, fresh], outputs_dir=tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `fashion-step-v2`"))
    assert "| 3 of 5 |" in row and "about 30 min (2 points)" in row and "4 records" in row
    assert "| not built yet |" in row                  # no report of its done points yet: none linked
    (tmp_path / "fashion-step-v2").mkdir()
    (tmp_path / "fashion-step-v2" / "report.html").write_text("<!DOCTYPE html>")
    row = next(line for line in findings.index_markdown(findings.load(), upcoming=[running, fresh],
                                                        outputs_dir=tmp_path).splitlines()
               if line.startswith("| `fashion-step-v2`"))
    assert "| [report.html](fashion-step-v2/report.html) |" in row
    row = next(line for line in text.splitlines() if line.startswith("| `cifar10-lt`"))
    assert "| 0 of 2 |" in row and "not started" in row and "`imbalance run --dry-run` estimates it" in row
    from imbalance.study import estimates          # a recorded dry run gives the time still needed
    estimates.record(tmp_path, "cifar10-lt", seconds=5400.0, text="about 1.5 h", points=2, workers=1)
    text = findings.index_markdown(findings.load(), upcoming=[running, fresh], outputs_dir=tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `cifar10-lt`"))
    assert "not started (2 points); its dry run estimated about 1.5 h on a" in row
    estimates.record(tmp_path, "cifar10-lt", seconds=5400.0, text="about 1.5 h", points=1, workers=1)
    text = findings.index_markdown(findings.load(), upcoming=[running, fresh], outputs_dir=tmp_path)
    assert "estimated" not in next(line for line in text.splitlines() if line.startswith("| `cifar10-lt`"))
    started = findings.Loaded(findings.NEXT_STUDIES[2], "cifar10-lt", [0, 1], {"a": 1800.0},
                              pd.DataFrame({"method": ["baseline"], "device": ["cpu"]}), pd.DataFrame())
    text = findings.index_markdown(findings.load(), upcoming=[started], outputs_dir=tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `cifar10-lt`"))   # measured beside estimated
    assert "about 30 min (1 point); its dry run estimated 1.5 h a point" in row
    finished = findings.Loaded(findings.NEXT_STUDIES[1], "mnist-step-paper-length", [0, 1], {"a": 60.0, "b": 60.0},
                               pd.DataFrame({"method": ["baseline"] * 2, "device": ["cpu"] * 2}), pd.DataFrame())
    main_table, in_progress = findings.index_markdown(findings.load(), upcoming=[finished, fresh],
                                                      outputs_dir=tmp_path).split("**In progress")
    assert "| `mnist-step-paper-length` |" in main_table and "| 2 of 2 |" in main_table
    assert "mnist-step-paper-length" not in in_progress and "| `cifar10-lt` |" in in_progress


def test_every_figure_the_findings_show_is_committed_and_captioned():
    section = _findings_section()
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", section)
    assert images, "the findings show the critical-difference diagrams"
    for path in images:
        assert (ROOT / path).is_file(), path
        after = section.split(f"({path})", 1)[1].lstrip("\n")
        assert after.startswith("*Figure: "), path


def test_a_complete_successor_takes_its_predecessors_place_and_the_predecessor_is_shown_beside_it():
    import pandas as pd
    studies, earlier = findings.load(), findings.load(specs=findings.EARLIER)    # as registered, before `current`
    upcoming = findings.load(specs=findings.NEXT_STUDIES)
    old = studies[findings.REPLICATION_SLOT]
    spec = next(u.spec for u in upcoming if u.spec.params == findings.SUCCESSORS[old.spec.params])
    half = findings.Loaded(spec, "fashion-step-v2", [0, 1], {"a": 1.0}, pd.DataFrame(), pd.DataFrame())
    full = findings.Loaded(spec, "fashion-step-v2", [0, 1], {"a": 1.0, "b": 1.0}, pd.DataFrame(), pd.DataFrame())
    now, before = findings.current(studies, earlier, [half])
    assert now[findings.REPLICATION_SLOT] is old and before == earlier          # not complete: the old one stays
    now, before = findings.current(studies, earlier, [full])
    assert now[findings.REPLICATION_SLOT] is full and findings.predecessor(full, before) is old
    text = findings.index_markdown(now, upcoming=[full], earlier=before)
    assert text.count("| `fashion-step-v2` |") == 1 and "| `fashion-step` |" in text


def test_a_running_successor_with_points_is_shown_as_partial_beside_the_study_it_will_replace():
    """cifar10-v2 with one point (here cifar10-fast-cpu's first point, relabelled) gives the CIFAR-10 block its
    point-by-point lines, said as 1 of 6 points; with none, or once complete, the block is not there."""
    import dataclasses
    studies, upcoming = findings.load(), findings.load(specs=findings.NEXT_STUDIES)   # as registered: the
    old = studies[findings.NATURAL_SLOT]                 # predecessor whatever has completed since
    nxt = next(u for u in upcoming if u.spec.params == findings.SUCCESSORS[old.spec.params])
    first = sorted(old.records["point_id"].unique())[0]
    one = dataclasses.replace(nxt, records=old.records[old.records["point_id"] == first].assign(study=nxt.study),
                              done={first: 1.0})
    title = "**Today's methods on CIFAR-10, point by point**"
    lines = findings._running_successor(old, [one], title, as_for=studies[0])
    assert lines[1].startswith(f"{title} (`{nxt.study}`, 1 of {len(nxt.grid)} points so far")
    expected = findings.point_by_point(one.records)["sentence"]
    assert lines[3:] == [f"- {t}" for t in expected] and len(expected) == 1
    assert findings._running_successor(old, [dataclasses.replace(one, records=one.records.iloc[:0], done={})],
                                       title, as_for=studies[0]) == []
    done = dataclasses.replace(one, done={p.point_id: 1.0 for p in one.grid})
    assert findings._running_successor(old, [done], title, as_for=studies[0]) == []


def test_a_long_tailed_recommendation_names_its_points_by_rho_alone():
    """Exponential points have no μ: the recommendation names them "(ρ 100)", never with a placeholder μ."""
    from browser.study import all_records
    from imbalance.analysis import frames
    records = frames.records_frame([{**r, "study": "lt", "roc_auc": r["roc_auc"] + 0.1 * (r["method"] == "rus")}
                                    for r in all_records(kinds=("exponential",), methods=("baseline", "ros", "rus"))])
    text = findings._recommendation(records, findings._point_winners(records))
    assert "elsewhere the winner: `rus` at (ρ 10) (ros shown worse); `rus` at (ρ 100) (ros shown worse)" in text, text
    assert "μ" not in text


def test_the_status_line_names_where_repeats_were_added_with_counts_in_their_number():
    import pandas as pd

    def loaded(name, repeats):      # {point: repeats}
        rows = [{"point_id": p, "repeat": r} for p, n in repeats.items() for r in range(n)]
        return findings.Loaded(findings.NEXT_STUDIES[0], name, list(repeats), {}, pd.DataFrame(rows), pd.DataFrame())
    assert findings._repeats([loaded("a", {"p": 3, "q": 3})]) == "3 repeats per point"
    text = findings._repeats([loaded("a", {"p": 10, "q": 3}), loaded("b", {"p": 5, "q": 6, "r": 3})])
    assert text == ("3 repeats per point, up to 10 at the points where `--until-decided` added them "
                    "(a: 1 point, b: 2 points)")
