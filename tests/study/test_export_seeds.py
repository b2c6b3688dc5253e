"""The export's seeds are the seeds the trainer used, for every kind of method (issue 22: the export once
re-derived the naming rule and wrote the wrong batch_seed for every loss-level method)."""
import pandas as pd
import pytest
from imbalance.data.datasets import load_dataset
from imbalance.registry import METHODS, get_method
from imbalance.study.store import readable
from imbalance.training import pipeline
from imbalance.training.recipes import RECIPES, recipe_with

TRAINED = list(METHODS)                      # every built-in trained method: 16 families
POSTHOC = ["baseline-thresh", "baseline-la", "baseline-tau-norm", "crt-la", "focal-thresh"]
POINT = dict(imbalance="step", rho=10, mu=0.5, n_max=40, seed=7, point_id="step_rho=10_mu=0.5")


@pytest.fixture(scope="module")
def trained_and_exported():
    captured = {}
    phase1, phase2 = pipeline._phase1_specs, pipeline._phase2_specs

    def keep1(*args, **kwargs):
        specs, n_train = phase1(*args, **kwargs)
        captured.update(specs)
        return specs, n_train

    def keep2(*args, **kwargs):
        specs = phase2(*args, **kwargs)
        captured.update(specs)
        return specs

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "_phase1_specs", keep1)
        mp.setattr(pipeline, "_phase2_specs", keep2)
        result = pipeline.run_grid_point(load_dataset("mnist-sample"), methods=TRAINED + POSTHOC, repeats=2,
                                         recipe=recipe_with(RECIPES["lenet5-mnist"], iterations=2, eval_interval=2),
                                         progress=False, **POINT)
    return captured, readable(pd.DataFrame(result.records))


@pytest.mark.slow
def test_every_method_family_is_exported_with_the_seeds_it_trained_with(trained_and_exported):
    captured, exported = trained_and_exported
    nets = pipeline._point_networks([get_method(m) for m in TRAINED + POSTHOC])
    checked = set()
    for row in exported.itertuples():
        t = get_method(row.method)
        t = get_method(t.base) if t.posthoc else t
        first = captured[(nets.trunk[t.name], row.repeat, 0)]       # phase 1: where the weights were drawn
        last = captured[(nets.final[t.name], row.repeat, 0)]        # the stage whose batches it saw last
        assert row.init_seed == first.init_seed, row.method
        assert row.batch_seed == last.batch_seed, row.method
        checked.add(t.name)
    assert checked == set(TRAINED)


def test_loss_level_methods_share_the_baseline_batches_and_second_stages_have_their_own(trained_and_exported):
    _, exported = trained_and_exported
    batch = exported[exported["repeat"] == 0].set_index("method")["batch_seed"]
    assert batch["focal"] == batch["la-loss"] == batch["cb-focal"] == batch["baseline"]
    assert batch["crt"] != batch["baseline"] and batch["two-phase-ros"] != batch["ros"]
    assert batch["baseline-la"] == batch["baseline"] and batch["crt-la"] == batch["crt"]


def test_a_best_of_network_has_no_exported_init_or_batch_seed():
    frame = pd.DataFrame([dict(dataset="mnist", imbalance="step", class_counts=[1, 2], classes=None,
                               method="baseline", seed=0, point_id="p", repeat=0, train_seconds=1.0,
                               selection="test-best-of-8")])
    out = readable(frame)
    assert out["subset_seed"][0] is not None
    assert out["init_seed"][0] is None and out["batch_seed"][0] is None
