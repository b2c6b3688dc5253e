"""Published gains on CIFAR-10-LT beside this tool's (issue 28), from the committed cifar10-lt study only.

The published figures are data, declared once here with their source, network and schedule; a gain is a
method's balanced accuracy minus plain ERM's (the paper's `baseline`), and its relative gain that
difference over ERM's.  Ours are paired per repeat at the study's ρ = 100 point (the same subset, seed and
initial weights for every method), with 95% Student-t intervals.  The balanced test set makes top-1
accuracy and balanced accuracy the same number, so Cao et al.'s top-1 error converts as 1 - error.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from imbalance.analysis import stats

METRIC = "balanced_accuracy"
REFERENCE = "baseline"          # ERM: plain cross-entropy on the imbalanced set


@dataclass(frozen=True)
class Published:
    source: str                 # who, where
    rho: float                  # the long-tail ratio of the reported run
    network: str                # their network and schedule (ours: the study's recipe)
    erm: float                  # ERM's balanced accuracy, as published
    methods: tuple              # (our method, their name, their balanced accuracy)


PUBLISHED = (
    Published("Menon et al. 2021, Long-tail learning via logit adjustment (ICLR), CIFAR-10-LT", 100.0,
              "ResNet-32, SGD, 200 epochs (Cao et al.'s CIFAR protocol)", 0.7136,
              (("baseline-la", "post-hoc logit adjustment", 0.7732), ("la-loss", "logit-adjusted loss", 0.7789))),
    Published("Cao et al. 2019, LDAM-DRW (NeurIPS), CIFAR-10-LT, top-1 error 29.64% (ERM) and 22.97%", 100.0,
              "ResNet-32, SGD, 200 epochs, re-weighting from epoch 160", 1 - 0.2964,
              (("ldam-drw", "LDAM-DRW", 1 - 0.2297),)),
)


def gains(records: pd.DataFrame, *, rho: float) -> pd.DataFrame:
    """One row per published method: ours (mean balanced accuracy of `baseline` and the method at the
    exponential point ρ = `rho`, their paired difference and 95% interval, n, relative gain) beside theirs."""
    columns = ["source", "method", "their_name", "their_erm", "their_value", "their_gain", "their_relative",
               "our_erm", "our_value", "our_gain", "ci_low", "ci_high", "n", "our_relative", "network"]
    at = records[(records["imbalance"] == "exponential") & (records["rho"].astype(float) == float(rho))] \
        if not records.empty else records
    rows = []
    for p in PUBLISHED:
        if p.rho != rho:
            continue
        for method, name, value in p.methods:
            ours = {}
            if not at.empty and {REFERENCE, method} <= set(at["method"]):
                base = at[at["method"] == REFERENCE].set_index("repeat")[METRIC].astype(float)
                mine = at[at["method"] == method].set_index("repeat")[METRIC].astype(float).reindex(base.index)
                c = stats.compare_paired(mine.to_numpy(), base.to_numpy())
                ours = dict(our_erm=base.mean(), our_value=mine.mean(), our_gain=c.mean_difference,
                            ci_low=c.ci_low, ci_high=c.ci_high, n=c.n_pairs,
                            our_relative=c.mean_difference / base.mean())
            rows.append(dict(source=p.source, method=method, their_name=name, their_erm=p.erm, their_value=value,
                             their_gain=value - p.erm, their_relative=(value - p.erm) / p.erm, network=p.network,
                             **ours))
    return pd.DataFrame(rows, columns=columns)


def published_markdown(study, *, recipe: str) -> list[str]:
    """The block for the README: `study` a findings.Loaded of cifar10-lt, `recipe` what ours trained."""
    head = (f"**Today's methods on CIFAR-10-LT beside their published gains** (`{study.study}`, CIFAR-10 (JPEG copy), "
            f"exponential profile, ρ = 100; balanced accuracy; ours: `{recipe}`, theirs: the network named; a gain "
            "is the method minus ERM (`baseline`), ours the mean paired difference over repeats with its 95% "
            "Student-t confidence interval)")
    table = gains(study.records, rho=100.0)
    if table["our_gain"].isna().all():
        return [head + ":", "", "not run yet: its state and the time still needed are in `outputs/README.md`."]
    lines = [head + ":", "", "| method | published: ERM → method (gain, relative) | here: ERM → method (gain [95% CI], "
             "relative, n) | their network |", "|---|---|---|---|"]
    for r in table.itertuples():
        here = ("not run" if pd.isna(r.our_gain) else
                f"{r.our_erm:.4f} → {r.our_value:.4f} ({r.our_gain:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}], "
                f"{r.our_relative:+.1%}, n={r.n})")
        lines.append(f"| `{r.method}` ({r.their_name}) | {r.their_erm:.4f} → {r.their_value:.4f} "
                     f"({r.their_gain:+.4f}, {r.their_relative:+.1%}) | {here} | {r.network} |")
    ran = table.dropna(subset=["our_gain"])
    theirs = list(ran.sort_values("their_gain", ascending=False)["method"])     # gains: the papers' ERMs differ
    ours = list(ran.sort_values("our_gain", ascending=False)["method"])
    lines += ["", f"- Order of the methods by their gain over ERM: published {', '.join(f'`{m}`' for m in theirs)}; "
              f"here {', '.join(f'`{m}`' for m in ours)}: the order "
              + ("holds" if theirs == ours else "differs") + ". Whether the gains keep their size on a "
              "network trained for minutes instead of 200 epochs is itself the finding; the networks, schedules "
              "and augmentation differ, so only the direction and rough size carry over."]
    return lines
