"""Post-hoc methods are never ranked, and are shown as what they add to their base network (issue 23);
one sentence per point in plain words (issue 26, item 5); conclusions left out where the design cannot test them."""
import math

import pandas as pd
from imbalance.analysis import answers, conclusions, frames, ranking, report
from scipy import stats as st


def made_up() -> pd.DataFrame:
    """Two points, 3 repeats; baseline-la re-scores baseline and has the highest ROC AUC everywhere."""
    auc = {"baseline": [0.90, 0.80, 0.85], "baseline-la": [0.95, 0.82, 0.88], "ros": [0.91, 0.81, 0.86],
           "crt": [0.905, 0.805, 0.855]}
    rows = []
    for rho in (10, 100):
        for method, values in auc.items():
            for repeat, v in enumerate(values):
                rows.append(dict(study="s", point_id=f"p{rho}", dataset="d", imbalance="step", rho=rho, mu=0.5,
                                 level=None, method=method, repeat=repeat, roc_auc=v - 0.01 * (rho == 100),
                                 accuracy=v - 0.1, diverged=False))
    return frames.records_frame(rows)


def test_a_post_hoc_method_never_appears_in_a_ranking():
    records = made_up()
    assert set(ranking.rank_methods(records).methods) == {"baseline", "ros", "crt"}
    named = ranking.rank_methods(records, methods=["baseline", "baseline-la", "ros"])
    assert "baseline-la" not in named.methods                        # not even when named
    doc = report.build_report("s", records)
    cd = next(s for s in doc.sections if s.title.startswith("Ranking"))
    assert "baseline-la" not in "".join(cd.blocks[2:])               # the ranking table
    recommendations = next(s for s in doc.sections if s.title.startswith("Recommendations"))
    winners_table = next(b for b in recommendations.blocks if "<table" in b)
    assert "baseline-la" not in winners_table


def test_rescoring_is_the_paired_difference_to_the_base_method_computed_by_hand():
    rows = answers.rescoring(made_up(), metric="roc_auc")
    assert list(rows["method"]) == ["baseline-la", "baseline-la"] and set(rows["base"]) == {"baseline"}
    row = rows[rows["point_id"] == "p10"].iloc[0]
    d = [0.05, 0.02, 0.03]                                            # baseline-la minus baseline, per repeat
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = st.t.ppf(0.975, 2) * sd / math.sqrt(3)                     # Student-t, n = 3
    assert math.isclose(row["mean_difference"], 0.0333333333, rel_tol=1e-6)
    assert math.isclose(row["ci_low"], mean - half, rel_tol=1e-9) and math.isclose(row["ci_high"], mean + half,
                                                                                  rel_tol=1e-9)
    assert math.isclose(row["ci_low"], -0.004612, abs_tol=1e-6) and math.isclose(row["ci_high"], 0.071279,
                                                                                abs_tol=1e-6)
    t = mean / (sd / math.sqrt(3))
    assert math.isclose(row["p_value"], 2 * st.t.sf(t, 2), rel_tol=1e-9)
    assert row["verdict"] == "undecided"                              # the interval holds 0


def test_thresholding_adds_nothing_to_roc_auc_so_it_is_left_out_there():
    records = made_up()
    thresh = records[records["method"] == "baseline"].assign(method="baseline-thresh", accuracy=lambda f: f.accuracy + 0.05)
    both = pd.concat([records, thresh], ignore_index=True)
    assert "baseline-thresh" not in set(answers.rescoring(both, metric="roc_auc")["method"])
    accuracy = answers.rescoring(both, metric="accuracy")
    gain = accuracy[accuracy["method"] == "baseline-thresh"]["mean_difference"]
    assert len(gain) == 2 and all(math.isclose(g, 0.05, abs_tol=1e-12) for g in gain)


def paired_rows(verdicts: dict) -> pd.DataFrame:
    return pd.DataFrame([dict(method=m, verdict=v, mean_difference=d, ci_low=d - 0.001, ci_high=d + 0.001, n_pairs=n)
                         for m, (v, d, n) in verdicts.items()])


def test_one_sentence_per_point_a_reader_can_act_on():
    rows = paired_rows({"ros": ("equivalent", 0.0023, 3), "crt": ("equivalent", 0.001, 3),
                        "la-loss": ("undecided", 0.004, 3), "cb-focal": (None, 0.01, 1)})
    text = answers.point_sentence(rows, reference="baseline", metric="roc_auc", margin=0.005, where="ρ=100, μ=0.5")
    assert text == ("At ρ=100, μ=0.5 no method is shown better than baseline; ros and crt are practically equivalent "
                    "to it (within ±0.005 multi-class ROC AUC); la-loss is undecided (not shown either way); "
                    "cb-focal (1 pair) could not be tested (too few pairs).")
    better = paired_rows({"crt": ("better", 0.056, 3), "rus": ("worse", -0.3, 3)})
    text = answers.point_sentence(better, reference="baseline", metric="roc_auc", margin=0.005, where="ρ=400, μ=0.5")
    assert text == ("At ρ=400, μ=0.5 crt (+0.0560 [+0.0550, +0.0570]) is shown better than baseline; "
                    "rus (-0.3000 [-0.3010, -0.2990]) is shown worse.")


def test_the_report_says_each_point_in_plain_words_without_post_hoc_methods():
    doc = report.build_report("s", made_up())
    section = next(s for s in doc.sections if s.title.startswith("Recommendations"))
    items = next(b for b in section.blocks if b.startswith("<ul>"))
    assert items.count("<li>") == 2 and "At ρ=10, μ=0.5" in items and "baseline-la" not in items
    rescored = next(s for s in doc.sections if s.title == "What re-scoring adds")
    assert "baseline-la" in "".join(rescored.blocks)


def test_a_single_point_study_leaves_out_the_conclusions_it_cannot_test():
    one = made_up()
    one = one[one["point_id"] == "p10"]
    gaps = conclusions.design_gaps(one)
    assert {"C1", "C2", "C3", "C4", "C6", "C7"} <= set(gaps)
    doc = report.build_report("s", one)
    section = next(s for s in doc.sections if s.title.startswith("The paper's conclusions"))
    text = "".join(section.blocks)
    assert "Left out, as this study&#x27;s design cannot test them" in text and "C4 (it is about most grid points" in text
    assert "<td>C4</td>" not in text
