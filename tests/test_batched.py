"""The batched trainer keeps the single-network trainer's exact semantics."""
import numpy as np
import pytest
import torch

from imbalance.batched import NetworkSpec, default_layout, intra_op_threads, predict_networks, train_networks
from imbalance.data import load_dataset
from imbalance.models import lenet5, resnet10
from imbalance.train import RECIPES, recipe_with


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-sample")


def _specs(k, *, seed=0, size=800):
    rng = np.random.default_rng(seed)
    return [NetworkSpec(indices=np.sort(rng.choice(4000, size, replace=True)), init_seed=k, batch_seed=100 + k,
                        lr_scale=(1.0, 0.5)[k % 2]) for k in range(k)]


def _max_rel(a, b):
    return max(((p - q).abs().max() / p.abs().max()).item()
               for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_threads_layout_is_bit_identical_to_single_runs_after_200_steps_float32(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=200, eval_interval=100)
    specs = _specs(3)
    with intra_op_threads(1):    # the threads layout runs each network on one intra-op thread
        single = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10,
                                layout="single", progress=False)
    together = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10,
                              layout="threads", workers=2, progress=False)
    assert max(_max_rel(a, b) for a, b in zip(single, together)) <= 1e-5
    assert all(torch.equal(p, q) for a, b in zip(single, together)
               for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert [r.curve for r in single] == [r.curve for r in together]


def test_vmap_layout_matches_single_runs_after_200_steps_float64(digits):
    # float64: float32 round-off differences between kernels grow through SGD (see README), so the
    # stacked layout's arithmetic is checked where round-off cannot hide a semantic difference
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=200, eval_interval=100, batch_size=8)
    specs = _specs(2, size=300) + [NetworkSpec(indices=np.arange(50), init_seed=9, batch_seed=9, lr_scale=0.1,
                                               trainable="output")]
    kw = dict(n_classes=10, dtype=torch.float64, progress=False)
    single = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="single", **kw)
    stacked = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="vmap", **kw)
    assert max(_max_rel(a, b) for a, b in zip(single, stacked)) <= 1e-5
    for a, b in zip(single, stacked):
        assert [p["iteration"] for p in a.curve] == [p["iteration"] for p in b.curve]
        assert np.allclose([p["train_loss"] for p in a.curve], [p["train_loss"] for p in b.curve], rtol=1e-6)


def test_vmap_layout_float32_agrees_with_single_runs_within_round_off_after_one_step(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=1, eval_interval=1)
    specs = _specs(4)
    kw = dict(n_classes=10, progress=False)
    single = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="single", **kw)
    stacked = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="vmap", **kw)
    assert max(_max_rel(a, b) for a, b in zip(single, stacked)) <= 1e-5


def test_vmap_layout_stops_only_the_diverging_network(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=10)
    specs = [NetworkSpec(indices=np.arange(400), init_seed=1, batch_seed=1),
             NetworkSpec(indices=np.arange(400), init_seed=2, batch_seed=2, lr_scale=1e6)]
    ok, bad = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10, layout="vmap",
                             progress=False)
    assert ok.diverged_at is None and ok.iterations_done == 40 and len(ok.curve) == 4
    assert bad.diverged_at is not None and bad.diverged_at < 10 and bad.iterations_done == 10


def test_two_phase_specs_change_only_the_output_layers_in_every_layout(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=20, eval_interval=10)
    pre = lenet5(seed=3)
    spec = NetworkSpec(indices=np.arange(300), init_seed=0, batch_seed=5, lr_scale=0.1, trainable="output",
                       init_from=pre)
    for layout in ("single", "threads", "vmap"):
        (tuned,) = train_networks([spec], digits.train_images, digits.train_labels, recipe, n_classes=10,
                                  layout=layout, progress=False)
        for (name, p), q in zip(tuned.model.named_parameters(), pre.parameters()):
            assert torch.equal(p, q) != name.startswith("fc2"), (layout, name)


def test_batched_predictions_equal_one_model_at_a_time(digits):
    models = [lenet5(seed=s) for s in range(3)]
    x = digits.test_images[:300].float() / 256
    together = predict_networks(models, x)
    alone = torch.stack([m.eval()(x) for m in models])
    assert together.shape == (3, 300, 10) and torch.allclose(together, alone, atol=1e-5)


def test_layout_defaults_follow_the_device_and_batch_norm():
    assert default_layout(torch.device("cpu"), lenet5(seed=0)) == "threads"
    assert default_layout(torch.device("cuda"), lenet5(seed=0)) == "vmap"
    assert default_layout(torch.device("cuda"), resnet10(n_classes=10, seed=0)) == "single"


def test_unknown_layout_is_rejected(digits):
    with pytest.raises(ValueError, match=r"layout must be one of \('auto', 'single', 'threads', 'vmap'\)"):
        train_networks(_specs(1), digits.train_images, digits.train_labels, RECIPES["lenet5-mnist"],
                       n_classes=10, layout="grouped")
