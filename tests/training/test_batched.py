"""The batched trainer keeps the single-network trainer's exact semantics."""
import numpy as np
import pytest
import torch
from imbalance.data.datasets import load_dataset
from imbalance.training.batched import NetworkSpec, default_layout, intra_op_threads, predict_networks, train_networks
from imbalance.training.models import lenet5, resnet10
from imbalance.training.recipes import RECIPES, recipe_with


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


@pytest.mark.slow
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
    assert default_layout(torch.device("cpu"), resnet10(n_classes=10, seed=0), 4) == "threads"
    assert default_layout(torch.device("cuda"), lenet5(seed=0), 1) == "single"     # one network: nothing to batch
    assert default_layout(torch.device("cpu"), lenet5(seed=0), 1) == "threads"    # same arithmetic as for any K
    assert default_layout(torch.device("mps"), lenet5(seed=0), 8) == "single"      # a device with no measured rule


def test_unknown_layout_is_rejected(digits):
    with pytest.raises(ValueError, match=r"layout must be one of \(.auto., .single., .threads., .vmap., .gemm., .vmap-graph., .gemm-graph.\)"):
        train_networks(_specs(1), digits.train_images, digits.train_labels, RECIPES["lenet5-mnist"],
                       n_classes=10, layout="grouped")


def _loss_specs(size=300):
    """Networks with different losses in one job: CE, focal + CB weights, la-loss, LDAM-DRW, and a
    class-aware stream (shuffle=False), on one step-imbalanced set."""
    from imbalance.registry import get_method
    from imbalance.training.losses import loss_terms
    labels = load_dataset("mnist-sample").train_labels.numpy()
    rng = np.random.default_rng(1)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 60 if c < 5 else 6, replace=False)
                                  for c in range(10)]))
    counts = np.bincount(labels[idx], minlength=10)
    terms = {m: loss_terms(get_method(m).loss, counts, iterations=40) for m in ("cb-focal", "la-loss", "ldam-drw")}
    stream = idx[rng.integers(0, len(idx), 40 * 8)]
    return [NetworkSpec(indices=idx, init_seed=1, batch_seed=1),
            NetworkSpec(indices=idx, init_seed=1, batch_seed=1, loss=terms["cb-focal"]),
            NetworkSpec(indices=idx, init_seed=2, batch_seed=3, loss=terms["la-loss"], lr_scale=0.5),
            NetworkSpec(indices=idx, init_seed=1, batch_seed=1, loss=terms["ldam-drw"]),
            NetworkSpec(indices=stream, init_seed=1, batch_seed=1, shuffle=False, loss=terms["la-loss"])]


def test_threads_layout_with_different_losses_is_bit_identical_to_single_runs(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=20, batch_size=8)
    specs = _loss_specs()
    with intra_op_threads(1):
        single = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10,
                                layout="single", progress=False)
    together = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10,
                              layout="threads", workers=2, progress=False)
    assert all(torch.equal(p, q) for a, b in zip(single, together)
               for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert [r.curve for r in single] == [r.curve for r in together]
    assert single[0].curve != single[1].curve        # the loss terms changed the training


def test_vmap_layout_with_different_losses_matches_single_runs_float64(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=20, batch_size=8)
    kw = dict(n_classes=10, dtype=torch.float64, progress=False)
    specs = _loss_specs()
    single = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="single", **kw)
    stacked = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="vmap", **kw)
    assert max(_max_rel(a, b) for a, b in zip(single, stacked)) <= 1e-10
    for a, b in zip(single, stacked):     # curve losses are kept in float32
        assert np.allclose([p["train_loss"] for p in a.curve], [p["train_loss"] for p in b.curve], rtol=1e-6)


def test_crt_spec_reinitialises_and_retrains_only_the_output_layers_in_every_layout(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=10, eval_interval=10)
    pre, fresh = lenet5(seed=3), lenet5(seed=7)
    spec = NetworkSpec(indices=np.arange(300), init_seed=7, batch_seed=5, trainable="output", init_from=pre,
                       reinit_output=True, shuffle=False)
    zero = recipe_with(recipe, base_lr=1e-300)      # (almost) no step: the starting point itself
    for layout in ("single", "threads", "vmap"):
        (start,) = train_networks([spec], digits.train_images, digits.train_labels, zero, n_classes=10,
                                  layout=layout, progress=False)
        (tuned,) = train_networks([spec], digits.train_images, digits.train_labels, recipe, n_classes=10,
                                  layout=layout, progress=False)
        for (name, p), q, f, s in zip(tuned.model.named_parameters(), pre.parameters(), fresh.parameters(),
                                      start.model.parameters()):
            if name.startswith("fc2"):
                assert torch.equal(s, f) and not torch.equal(p, f), (layout, name)   # fresh start, then trained
            else:
                assert torch.equal(p, q), (layout, name)


def test_gemm_layout_matches_single_runs_float64_with_losses_and_a_two_phase_network(digits):
    # the bmm-over-im2col layout (issue 14): each network on its own mini-batches, as "single"
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=20, batch_size=8)
    kw = dict(n_classes=10, dtype=torch.float64, progress=False, test=(digits.test_images[:200],
                                                                       digits.test_labels[:200]))
    specs = _loss_specs() + [NetworkSpec(indices=np.arange(50), init_seed=9, batch_seed=9, lr_scale=0.1,
                                         trainable="output", init_from=lenet5(seed=3).double())]
    single = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="single", **kw)
    gemm = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout="gemm", **kw)
    assert max(_max_rel(a, b) for a, b in zip(single, gemm)) <= 1e-10
    for a, b in zip(single, gemm):
        assert [p["test_accuracy"] for p in a.curve] == [p["test_accuracy"] for p in b.curve]
        assert np.allclose([p["train_loss"] for p in a.curve], [p["train_loss"] for p in b.curve], rtol=1e-6)


def test_stacked_forward_equals_each_all_cnn_c_s_own_forward_with_its_dropout_masks():
    from imbalance.training.batched import stacked_forward
    from imbalance.training.models import allcnn, dropout_masks, dropout_shapes
    models = [allcnn(seed=s).double() for s in (0, 1)]
    alone = [allcnn(seed=s).double() for s in (0, 1)]
    x = torch.randn((2, 3, 3, 16, 16), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
              for n, _ in models[0].named_parameters()}
    masks = dropout_masks(models, dropout_shapes(models[0], x.shape[1:]), device="cpu", dtype=torch.float64)
    together = stacked_forward(models[0], {**params, **masks}, x)
    assert torch.allclose(together, torch.stack([m.train()(x[j]) for j, m in enumerate(alone)]), rtol=0, atol=1e-12)
    assert torch.allclose(stacked_forward(models[0], params, x),           # no masks: eval mode
                          torch.stack([m.eval()(x[j]) for j, m in enumerate(alone)]), rtol=0, atol=1e-12)


def test_gemm_layout_refuses_a_model_it_cannot_stack_naming_the_layout(digits):
    from imbalance.training.models import resnet10
    specs = [NetworkSpec(indices=np.arange(20), init_seed=0, batch_seed=0, init_from=resnet10(n_classes=10,
                                                                                            in_channels=1, seed=0))]
    with pytest.raises(ValueError, match="layout 'gemm' needs models without buffers \\(batch norm\\)"):
        train_networks(specs, digits.train_images, digits.train_labels,
                       recipe_with(RECIPES["lenet5-mnist"], iterations=1, eval_interval=1), n_classes=10,
                       layout="gemm", progress=False)


def test_an_out_of_memory_group_is_halved_retrained_and_recorded(digits, monkeypatch):
    # CPU stand-in for CUDA: a group above 2 networks "does not fit"
    from imbalance.training import batched
    real = batched._train_vmap

    def small_memory(specs, *args, **kw):
        if len(specs) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(specs, *args, **kw)
    monkeypatch.setattr(batched, "_train_vmap", small_memory)
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=4, eval_interval=2, batch_size=8)
    specs = _specs(5, size=100)
    calls = []
    with pytest.warns(RuntimeWarning, match="CUDA out of memory training 5 networks in lockstep: retrying in groups of 2"):
        halved = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10, layout="vmap",
                                progress=False, progress_callback=lambda d, t: calls.append(d))
    monkeypatch.setattr(batched, "_train_vmap", real)
    whole = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10, layout="vmap",
                           progress=False)
    assert [r.group_size for r in halved] == [2, 2, 2, 2, 1] and {r.oom_halvings for r in halved} == {1}
    assert [r.group_size for r in whole] == [5] * 5 and {r.oom_halvings for r in whole} == {0}
    for a, b in zip(halved, whole):        # each network trains as it would in any group
        assert all(torch.allclose(p, q, rtol=1e-5, atol=1e-6) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert calls[-1] == 5 * 4


@pytest.mark.parametrize("forward", ["vmap", "gemm"])
def test_graph_layouts_static_buffer_step_is_bit_identical_to_the_eager_step_on_cpu(digits, forward):
    # on a CPU the CUDA-graph layouts run their static-buffer step eagerly: the plumbing of what CUDA captures
    # (inputs copied in, outputs copied out, lr with the diverged networks zeroed) must change nothing
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=20, eval_interval=10, batch_size=8)
    specs = _loss_specs() + [NetworkSpec(indices=np.arange(400), init_seed=2, batch_seed=2, lr_scale=1e6)]
    kw = dict(n_classes=10, progress=False)
    plain = _specs(2, size=100)                                   # cross-entropy only: no loss terms to copy in
    assert all(torch.equal(p, q) for a, b in zip(*(train_networks(plain, digits.train_images, digits.train_labels,
                                                                  recipe, layout=lay, **kw) for lay in
                                                   (forward, f"{forward}-graph")))
               for p, q in zip(a.model.parameters(), b.model.parameters()))
    eager = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout=forward, **kw)
    static = train_networks(specs, digits.train_images, digits.train_labels, recipe, layout=f"{forward}-graph", **kw)
    assert eager[-1].diverged and static[-1].diverged_at == eager[-1].diverged_at
    assert all(torch.allclose(p, q, rtol=0, atol=0, equal_nan=True)        # bit-identical (NaN: the diverged one)
               for a, b in zip(eager, static) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert [r.curve for r in eager] == [r.curve for r in static]


def test_static_step_records_a_cuda_graph_only_on_cuda():
    from imbalance.training.batched import _StaticStep
    calls = []

    def body(b):
        calls.append(1)
        return (b["x"] * 2,)
    cpu = _StaticStep(body, capture=False)
    assert torch.equal(cpu({"x": torch.ones(3)})[0], torch.full((3,), 2.0))
    out = cpu({"x": torch.arange(3.0)})[0]
    assert torch.equal(out, torch.arange(3.0) * 2) and cpu.graph is None and len(calls) == 2
    if torch.cuda.is_available():     # the GPU script covers exactness; here: capture and replay
        gpu = _StaticStep(body, capture=True)
        assert torch.equal(gpu({"x": torch.ones(3, device="cuda"), "lr": torch.zeros(1, device="cuda")})[0].cpu(),
                           torch.full((3,), 2.0))
