"""Analysis speed on a paper-scale synthetic database (issue 24): stats, conclusions, rankings and the
whole report (no figures saved) for 12 step points x 17 methods x 50 repeats (the registry's first 14
trained methods + baseline-thresh, ros-thresh, rus-thresh), with its linear (4 points) and graded (6 points x ros/rus)
companions. Prints the seconds of each stage. Goal: under 60 s for the whole report on 2 cores.
Usage: python benchmarks/analysis_speed.py [--repeats 50] [--seed 0]
"""
import argparse
import math
import time

import numpy as np
import pandas as pd

from imbalance import registry

RHOS, MUS = (10, 100, 1000, 5000), (0.2, 0.5, 0.9)


def synthetic(*, imbalance="step", rhos=RHOS, mus=MUS, levels=(None,), methods, repeats, seed, study):
    """Records with a ROC AUC and accuracies per network, paired noise per repeat, and 4-evaluation curves."""
    rng = np.random.default_rng(seed)
    rows, curves = [], []
    shift = {m: rng.normal(0, 0.01) for m in methods}
    for rho in rhos:
        for mu in (mus if imbalance == "step" else (None,)):
            for level in levels:
                point = f"{imbalance}_rho={rho}" + (f"_mu={mu}" if mu else "") + (f"_level={level}" if level else "")
                loss = 0.02 * math.log10(rho) * (mu or 0.5)
                shared = rng.normal(0, 0.004, repeats)          # the repeat's subset and weights: paired
                for method in methods:
                    base = registry.trained_method(method)
                    for r in range(repeats):
                        auc = 0.99 - loss + shift[base] * loss * 10 + shared[r] + rng.normal(0, 0.002)
                        acc = auc - 0.1
                        rows.append(dict(study=study, point_id=point, dataset="mnist", imbalance=imbalance, rho=rho,
                                         mu=mu, level=level, method=method, repeat=r, roc_auc=auc, accuracy=acc,
                                         thresholded_accuracy=acc + 0.02 * (base != "rus"),
                                         balanced_accuracy=acc, diverged=0, train_seconds=30.0))
                        if method in ("ros", "rus") and level is None:
                            for i, it in enumerate((500, 1000, 1500, 2000)):
                                curves.append(dict(point_id=point, method=method, repeat=r, iteration=it,
                                                   train_accuracy=acc + 0.01 * i, test_accuracy=acc + 0.002 * i))
    return pd.DataFrame(rows), pd.DataFrame(curves)


def timed(label, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<40s} {time.perf_counter() - start:7.1f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from imbalance.analysis import conclusions, ranking, report, stats
    methods = list(registry.method_names())[:14] + ["baseline-thresh", "ros-thresh", "rus-thresh"]   # 17
    step, curves = synthetic(methods=methods, repeats=args.repeats, seed=args.seed, study="step")
    linear, _ = synthetic(imbalance="linear", methods=["baseline"], repeats=args.repeats, seed=1, study="linear")
    graded, _ = synthetic(rhos=(1000,), levels=(1, 10, 100, 1000), methods=["ros", "rus"], mus=(0.5, 0.9),
                          repeats=args.repeats, seed=2, study="graded")
    print(f"{len(step):,} step records ({step['point_id'].nunique()} points x {len(methods)} methods x "
          f"{args.repeats} repeats), {len(linear):,} linear, {len(graded):,} graded")
    total = time.perf_counter()
    timed("stats.paired_differences (roc_auc)", lambda: stats.paired_differences(step))
    timed("stats.point_winners (roc_auc)", lambda: stats.point_winners(step))
    timed("conclusions.check_all", lambda: conclusions.check_all(step, curves, others=[linear, graded]))
    timed("ranking.rank_methods", lambda: ranking.rank_methods(step))
    timed("report.build_report (whole, no files)", lambda: report.build_report(
        "step", step, curves, others={"linear": linear, "graded": graded}))
    print(f"{'all of the above':<40s} {time.perf_counter() - total:7.1f} s")


if __name__ == "__main__":
    main()
