"""The fast CIFAR-10 recipe (imbalance.training.fast): layouts agree with the single-network path, seeds
determine everything, the whitening sees only its network's positions, augmentation and loss as
specified, recipes checked."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imbalance.training import fast
from imbalance.training.batched import NetworkSpec
from imbalance.training.single import evaluate

TINY = fast.fast_recipe_with(fast.FAST_RECIPES["fast-cifar10-cpu"], widths=(4, 6, 8), batch_size=12,
                             iterations=12, eval_interval=4, whiten_images=100)


@pytest.fixture(scope="module")
def toy():
    """120 random 16x16 colour images (uint8) and labels of 5 classes."""
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (120, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 5, (120,), generator=g)
    return images, labels


def _specs():
    return [NetworkSpec(indices=np.arange(0, 80), init_seed=1, batch_seed=11),
            NetworkSpec(indices=np.r_[np.arange(40, 120), np.arange(40, 60)], init_seed=2, batch_seed=12)]


def _train(toy, layout, specs=None, recipe=TINY, dtype=torch.float64, test=True):
    images, labels = toy
    return fast.train_fast_networks(specs or _specs(), images, labels, recipe, n_classes=5, layout=layout,
                                    dtype=dtype, test=(images[:30], labels[:30]) if test else None)


def _max_difference(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a.model.state_dict().values(),
                                                          b.model.state_dict().values()))


@pytest.mark.parametrize("layout", ["grouped", "vmap", "threads"])
def test_batched_layouts_match_single_runs_float64(toy, layout):
    single, batched = _train(toy, "single"), _train(toy, layout)
    for a, b in zip(single, batched):
        assert _max_difference(a, b) < 1e-10
        assert [p["iteration"] for p in a.curve] == [p["iteration"] for p in b.curve] == [4, 8, 12]
        for pa, pb in zip(a.curve, b.curve):
            assert pa["train_loss"] == pytest.approx(pb["train_loss"], abs=1e-6)
            assert pa["train_accuracy"] == pb["train_accuracy"]
            assert pa["test_accuracy"] == pb["test_accuracy"]


def test_training_moves_every_trained_tensor_and_keeps_the_whitening_frozen(toy):
    images, labels = toy
    spec = _specs()[0]
    r = _train(toy, "single", [spec])[0]
    w = fast.fit_whitening(images, spec.indices, patch=2, epsilon=TINY.whiten_epsilon, max_images=100,
                           seed=spec.init_seed)
    p0, _ = fast.init_network(TINY, w, n_classes=5, seed=spec.init_seed, dtype=torch.float64)
    assert torch.equal(r.model.whiten_weight, w[0]) and torch.equal(r.model.whiten_bias, w[1])
    for name, t in p0.items():
        assert not torch.equal(getattr(r.model, name), t), name


def test_seeds_determine_weights_and_curves_and_a_partner_changes_nothing(toy):
    a, b = _train(toy, "grouped"), _train(toy, "grouped")
    for x, y in zip(a, b):
        assert _max_difference(x, y) == 0 and x.curve == y.curve
    other = NetworkSpec(indices=np.arange(10, 90), init_seed=5, batch_seed=15)
    with_other = _train(toy, "grouped", [_specs()[0], other])[0]
    assert _max_difference(a[0], with_other) < 1e-12
    moved = _train(toy, "single", [NetworkSpec(indices=np.arange(0, 80), init_seed=1, batch_seed=99)])[0]
    assert _max_difference(a[0], moved) > 1e-3                       # batch order and augmentation moved


@pytest.mark.parametrize("layout", ["grouped", "vmap"])
def test_two_phase_specs_fine_tune_only_the_head_batched_as_alone(toy, layout):
    pre = _train(toy, "single", test=False)
    phase2 = [NetworkSpec(indices=np.arange(0, 60), init_seed=0, batch_seed=21 + j, lr_scale=0.1,
                          trainable="output", init_from=pre[j].model) for j in range(2)]
    alone = [_train(toy, "single", [s])[0] for s in phase2]
    batched = _train(toy, layout, phase2)
    for a, b, p in zip(alone, batched, pre):
        assert _max_difference(a, b) < 1e-10
        state, before = a.model.state_dict(), p.model.state_dict()
        for name, t in state.items():        # whitening, convolutions, bn shifts and running stats kept
            assert torch.equal(t, before[name]) == (name != "head"), name
        assert a.curve[-1]["lr"] == pytest.approx(0.1 * fast.learning_rate(TINY, TINY.iterations - 1))


def test_float32_grouped_agrees_with_single_within_round_off(toy):
    r = fast.fast_recipe_with(TINY, iterations=1, eval_interval=1)
    single, grouped = _train(toy, "single", recipe=r, dtype=torch.float32), \
        _train(toy, "grouped", recipe=r, dtype=torch.float32)
    for a, b in zip(single, grouped):
        assert _max_difference(a, b) < 1e-5


def _numpy_patch_covariance(images, positions, p):
    x = images[positions].numpy().astype(np.float64) / 255.0
    n, c, h, w = x.shape
    rows = [x[k, :, i:i + p, j:j + p].reshape(-1) for k in range(n) for i in range(h - p + 1)
            for j in range(w - p + 1)]
    return np.cov(np.array(rows), rowvar=False, bias=True), np.array(rows)


def test_whitening_is_fitted_only_on_the_given_positions(toy):
    images, _ = toy
    indices = np.array([3, 5, 5, 8, 20, 21, 3, 40])                   # duplicates count once
    weight, bias = fast.fit_whitening(images, indices, patch=2, epsilon=1e-3, max_images=100)
    others = images.clone()
    others[np.setdiff1d(np.arange(len(images)), indices)] = 255 - others[np.setdiff1d(np.arange(len(images)), indices)]
    again = fast.fit_whitening(others, indices, patch=2, epsilon=1e-3, max_images=100)
    assert torch.equal(weight, again[0]) and torch.equal(bias, again[1])
    # W^T W = (cov + eps I)^-1, sign-free check against numpy; the bias centres the patches
    cov, rows = _numpy_patch_covariance(images, np.unique(indices), 2)
    w = weight.reshape(24, 12).numpy()[:12]
    np.testing.assert_allclose(w.T @ w, np.linalg.inv(cov + 1e-3 * np.eye(12)), rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(weight.reshape(24, 12).numpy() @ rows.mean(0) + bias.numpy(), 0, atol=1e-9)
    np.testing.assert_allclose(weight.reshape(24, 12).numpy()[12:], -w)


def test_whitening_draws_at_most_max_images_by_seed(toy):
    images, _ = toy
    a = fast.fit_whitening(images, np.arange(100), max_images=10, seed=3)
    b = fast.fit_whitening(images, np.arange(100), max_images=10, seed=3)
    c = fast.fit_whitening(images, np.arange(100), max_images=10, seed=4)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[0], c[0])
    picked = np.sort(np.random.default_rng(3).choice(np.arange(100), size=10, replace=False))
    cov, _ = _numpy_patch_covariance(images, picked, 2)
    w = a[0].reshape(24, 12).numpy()[:12]
    np.testing.assert_allclose(w.T @ w, np.linalg.inv(cov + 5e-4 * np.eye(12)), rtol=1e-7, atol=1e-5)


def test_augment_flips_and_translates_a_hand_made_image():
    img = torch.arange(2 * 5 * 6, dtype=torch.float64).reshape(1, 2, 5, 6)
    x = img.repeat(3, 1, 1, 1)
    out = fast.augment(x, flip=torch.tensor([False, True, False]),
                       shift=torch.tensor([[0, 0], [0, 0], [1, -2]]), pad=2)
    assert out.shape == x.shape
    assert torch.equal(out[0], img[0])
    assert torch.equal(out[1], img[0].flip(-1))
    # shift (dy, dx) = (1, -2): out[y, x] = in[y - 1, x + 2], reflected at the borders
    assert torch.equal(out[2, :, 1:, :4], img[0, :, :4, 2:])
    assert torch.equal(out[2, :, 0, :4], img[0, :, 1, 2:])            # row -1 reflects row 1
    assert torch.equal(out[2, :, 1:, 4], img[0, :, :4, 4])            # column 6 reflects column 4
    assert torch.equal(out[2, :, 1:, 5], img[0, :, :4, 3])            # column 7 reflects column 3


def test_augment_streams_depend_only_on_the_batch_seed():
    a, b, c = (fast.AugmentStream(s, TINY) for s in (4, 4, 5))
    fa, sa = a.draw(64)
    fb, sb = b.draw(64)
    fc, sc = c.draw(64)
    assert torch.equal(fa, fb) and torch.equal(sa, sb) and not torch.equal(sa, sc)
    assert sa.abs().max() == TINY.translate and 0.3 < fa.float().mean() < 0.7
    assert fast.AugmentStream(4, fast.fast_recipe_with(TINY, flip=False, translate=0)).draw(3) == (None, None)


@pytest.mark.parametrize("smoothing", [0.0, 0.2, 0.5])
def test_label_smoothing_loss_equals_torch_cross_entropy(smoothing):
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 3, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (16, 3), generator=g)
    ours = fast.smoothed_cross_entropy(logits, labels, smoothing)
    for k in range(3):
        ref = F.cross_entropy(logits[:, k], labels[:, k], label_smoothing=smoothing)
        assert ours[k].item() == pytest.approx(ref.item(), rel=1e-12)


def test_nesterov_step_matches_torch_sgd():
    g = torch.Generator().manual_seed(1)
    w0 = [torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)]
    grads = [[torch.randn_like(w) for w in w0] for _ in range(3)]
    ours, velocity = [w.clone() for w in w0], [torch.zeros_like(w) for w in w0]
    ref = [w.clone().requires_grad_() for w in w0]
    opt = torch.optim.SGD(ref, lr=0.3, momentum=0.9, weight_decay=5e-4, nesterov=True)
    for step in grads:
        fast.nesterov_step_(ours, step, velocity, lr=0.3, momentum=0.9, weight_decay=5e-4)
        for p, gr in zip(ref, step):
            p.grad = gr.clone()
        opt.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)


def test_learning_rate_warms_up_linearly_then_decays_to_final_lr():
    r = fast.fast_recipe_with(TINY, iterations=100, warmup=0.2, lr=0.4, final_lr=0.1)
    lrs = [fast.learning_rate(r, t) for t in range(100)]
    assert lrs[0] == pytest.approx(0.4 / 20) and lrs[19] == pytest.approx(0.4)
    assert lrs[20] == pytest.approx(0.4) and lrs[99] == pytest.approx(0.04)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:20])) and all(a > b for a, b in zip(lrs[20:], lrs[21:]))


def test_returned_models_evaluate_in_eval_mode_like_the_curve(toy):
    images, labels = toy
    r = _train(toy, "vmap", dtype=torch.float32)[1]
    ev = evaluate(r.model, images[:30], labels[:30], priors=np.full(5, 0.2), preprocessor=r.preprocessor,
                  device="cpu")
    assert ev.accuracy == pytest.approx(r.curve[-1]["test_accuracy"], abs=1e-6)
    assert not r.model.training and r.iterations_done == TINY.iterations and r.diverged_at is None
    x = r.preprocessor.transform(images[:4])
    mirrored = fast.fast_recipe_with(TINY, tta=False)
    r.model.recipe = mirrored
    plain, flipped = r.model(x), r.model(x.flip(-1))
    r.model.recipe = TINY
    torch.testing.assert_close(r.model(x), (plain + flipped) / 2)


@pytest.mark.parametrize("field, value", [("widths", (32, 64)), ("lr", -1.0), ("momentum", 1.0),
                                          ("iterations", 0), ("label_smoothing", 1.0), ("translate", -1),
                                          ("flip", "yes"), ("warmup", 1.0), ("batch_size", 2.5)])
def test_recipe_with_a_bad_field_raises_naming_it(field, value):
    with pytest.raises(ValueError, match=f"recipe 'fast-cifar10-cpu': {field} must be"):
        fast.fast_recipe_with(fast.FAST_RECIPES["fast-cifar10-cpu"], **{field: value})
    with pytest.raises(ValueError, match="unknown fast recipe field 'lr_polcy'"):
        fast.fast_recipe_with(TINY, lr_polcy="linear")


def test_bad_specs_layouts_and_recipes_are_rejected_before_training(toy):
    images, labels = toy
    call = lambda specs, **kw: fast.train_fast_networks(specs, images, labels, kw.pop("recipe", TINY),
                                                        n_classes=5, **kw)
    with pytest.raises(ValueError, match=r"spec lr_scale must be a finite number > 0, got 0"):
        call([NetworkSpec(indices=np.arange(10), init_seed=0, batch_seed=0, lr_scale=0)])
    with pytest.raises(ValueError, match=r"spec init_from must be a FastNet"):
        call([NetworkSpec(indices=np.arange(10), init_seed=0, batch_seed=0, init_from=torch.nn.Linear(2, 2))])
    with pytest.raises(ValueError, match=r"spec trainable must be None, 'output' or names among block1_conv1"):
        call([NetworkSpec(indices=np.arange(10), init_seed=0, batch_seed=0, trainable="fc")])
    with pytest.raises(ValueError, match=r"spec indices must be .* positions in \[0, 120\)"):
        call([NetworkSpec(indices=np.arange(100, 130), init_seed=0, batch_seed=0)])
    with pytest.raises(ValueError, match="layout must be one of"):
        call(_specs(), layout="stacked")
    with pytest.raises(ValueError, match="recipe must be a FastRecipe"):
        call(_specs(), recipe="fast-cifar10")
    with pytest.raises(ValueError, match="images"):
        fast.train_fast_networks(_specs(), images.float(), labels, TINY, n_classes=5)


def test_recipes_declare_the_published_elements():
    for r in fast.FAST_RECIPES.values():
        assert r.label_smoothing == 0.2 and r.flip and r.translate == 2 and r.whiten_patch == 2
        assert r.iterations % r.eval_interval == 0
    gpu, cpu = fast.FAST_RECIPES["fast-cifar10"], fast.FAST_RECIPES["fast-cifar10-cpu"]
    assert gpu.widths == (64, 256, 256)                                # airbench94's widths
    assert all(c <= g for c, g in zip(cpu.widths, gpu.widths)) and cpu.iterations * cpu.batch_size < \
        gpu.iterations * gpu.batch_size


def test_flops_per_network_is_three_forward_passes_as_torch_counts_them():
    from torch.utils.flop_counter import FlopCounterMode
    r = fast.fast_recipe_with(TINY, widths=(2, 3, 4), batch_size=1, iterations=1, tta=False)
    w = fast.fit_whitening(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), np.arange(4))
    p, b = fast.init_network(r, w, n_classes=10, seed=0)
    with FlopCounterMode(display=False) as counter:
        fast.forward(p, b, torch.rand(1, 3, 32, 32), r, train=True)
    assert fast.flops_per_network(r, n_classes=10) == 3 * counter.get_total_flops() == 6 * 722_767  # by hand
    airbench94 = fast.fast_recipe_with(fast.FAST_RECIPES["fast-cifar10"], batch_size=1024, iterations=483)
    assert fast.flops_per_network(airbench94) == pytest.approx(3.6e14, rel=0.05)    # its paper's count


def test_probe_times_iterations_on_random_images():
    assert 0 <= fast.probe_seconds_per_iteration(TINY, steps=2) < 5


@pytest.mark.parametrize("layout", ["grouped", "vmap"])
def test_a_diverging_network_is_flagged_and_leaves_its_group_partner_alone(toy, layout):
    images, _ = toy
    w = fast.fit_whitening(images, np.arange(80), max_images=100)
    nets = []
    for seed in (1, 2):
        p, b = fast.init_network(TINY, w, n_classes=5, seed=seed, dtype=torch.float64)
        if seed == 2:
            p["head"][0] = float("nan")                                  # NaN logits from the first step
        nets.append(fast.FastNet(p, b, TINY))
    specs = [NetworkSpec(indices=np.arange(80), init_seed=0, batch_seed=30 + j, init_from=m) for j, m in enumerate(nets)]
    healthy_alone = _train(toy, "single", specs[:1])[0]
    healthy, broken = _train(toy, layout, specs)
    assert broken.diverged_at == 0 and broken.iterations_done == TINY.eval_interval and broken.curve == []
    assert healthy.diverged_at is None and _max_difference(healthy, healthy_alone) < 1e-10
    for a, b in zip(healthy.curve, healthy_alone.curve, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6) and a["test_accuracy"] == b["test_accuracy"]


# --- a grid point on a fast recipe (methods.run_grid_point dispatches to train_fast_networks) ----------

def _fast_point(toy, methods, **kw):
    from imbalance.data.datasets import ImageDataset
    from imbalance.training.pipeline import run_grid_point
    images, labels = toy
    data = ImageDataset(name="toy", classes=tuple("abcde"), train_images=images[:100], train_labels=labels[:100],
                        test_images=images[100:], test_labels=labels[100:], source="test")
    return run_grid_point(data, imbalance="step", rho=4, mu=0.4, n_max=12, minority="lowest", methods=methods,
                          repeats=2, seed=3, recipe=TINY, batched=False, progress=False, **kw)


def test_a_fast_grid_point_trains_each_network_as_train_fast_networks_does_alone(toy):
    from imbalance.seeds import derive_seed
    result = _fast_point(toy, ["baseline", "ros", "two-phase-ros", "baseline-thresh", "ros-la"])
    assert len(result.records) == 5 * 2 and result.base_lr == TINY.lr
    images, labels = toy
    rec = {(r["method"], r["repeat"]): r for r in result.records}
    point = rec[("baseline", 1)]["point_id"]
    # the baseline of repeat 1, retrained alone from its derived seeds on its subset's positions
    counts = rec[("baseline", 1)]["class_counts"]
    alone_spec = NetworkSpec(indices=_subset_positions(labels[:100], counts, result, 1),
                             init_seed=derive_seed(3, point, 1, "init"),
                             batch_seed=derive_seed(3, point, 1, "none", "batches"))
    alone = fast.train_fast_networks([alone_spec], images[:100], labels[:100], TINY, n_classes=5, layout="single",
                                     test=(images[100:], labels[100:]))[0]
    assert _max_difference(alone, result.results[("none", 1)]) == 0.0
    assert rec[("baseline", 1)]["curve"] == alone.curve
    # thresholding reuses the baseline's network: its accuracy is the baseline's thresholded accuracy
    for r in (0, 1):
        assert rec[("baseline-thresh", r)]["accuracy"] == rec[("baseline", r)]["thresholded_accuracy"]
        assert rec[("baseline-thresh", r)]["roc_auc"] == rec[("baseline", r)]["roc_auc"]
        assert 0.0 <= rec[("ros", r)]["roc_auc"] <= 1.0
    # two-phase fine-tunes only the head of its copy of the ros network
    ros, two = result.results[("ros", 0)].model, result.results[("two-phase-ros", 0)].model
    changed = {n for n, t in two.state_dict().items() if not torch.equal(t, ros.state_dict()[n])}
    assert changed == {"head"}


def _subset_positions(labels, counts, result, repeat):
    """The repeat's imbalanced subset, as run_grid_point drew it (profiles.imbalanced_subset, same seed)."""
    from imbalance.data.profiles import imbalanced_subset
    from imbalance.seeds import derive_seed
    subset = imbalanced_subset(labels.numpy(), profile="step", rho=4, mu=0.4, n_max=12, minority="lowest",
                               n_classes=5, random_state=derive_seed(3, "step_rho=4_mu=0.4", repeat, "subset"))
    assert subset.counts.tolist() == counts
    return subset.indices


def test_a_fast_grid_point_trains_every_kind_of_method_loss_stream_and_crt(toy):
    res = _fast_point(toy, ["baseline", "la-loss", "cb-focal", "ldam-drw", "class-aware", "crt", "crt-la"])
    by = {r["method"]: r for r in res.records}
    assert set(by) == {"baseline", "la-loss", "cb-focal", "ldam-drw", "class-aware", "crt", "crt-la"}
    assert all(r["failure"] is None and r["roc_auc"] is not None for r in res.records)
    assert by["crt"]["n_train"] == by["baseline"]["n_train"]
    # cRT's head: a ninth of the 12 iterations (rounded: 1), its one update at the cosine's start, the peak lr
    assert by["crt"]["iterations"] == 1 and [p["lr"] for p in by["crt"]["curve"]] == [TINY.lr]


def test_a_fast_second_stage_cosine_schedule_is_pytorchs_cosine_annealing_to_zero():
    recipe = fast.fast_recipe_with(TINY, iterations=7, lr_policy="cosine")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.0)
    for t in range(7):
        assert fast.learning_rate(recipe, t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="lr_policy must be one of piecewise-linear, cosine"):
        fast.fast_recipe_with(TINY, lr_policy="step")


def test_tau_norm_rescales_a_fast_networks_head():
    from imbalance.training.pipeline import tau_normalised
    result = fast.train_fast_networks([NetworkSpec(indices=np.arange(24), init_seed=1, batch_seed=2)],
                                      torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)), torch.arange(24) % 5,
                                      fast.fast_recipe_with(TINY, iterations=2, eval_interval=2), n_classes=5)[0]
    out = tau_normalised(result.model, tau=1.0)
    norms = out.head.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(5)) and not torch.equal(out.head, result.model.head)


# --- every method on the fast recipe (issue 23) -----------------------------------------------------------

def _method_specs(*names):
    from imbalance.registry import get_method
    from imbalance.training.losses import loss_terms
    counts = [40, 30, 20, 10, 5]
    return [NetworkSpec(indices=np.arange(0, 80), init_seed=1, batch_seed=11,
                        loss=loss_terms(get_method(n).loss, counts, iterations=TINY.iterations),
                        head_scale=30.0 if get_method(n).head == "cosine" else 0.0) for n in names]


@pytest.mark.parametrize("layout", ["grouped", "vmap", "threads"])
def test_loss_level_methods_train_on_the_fast_recipe_and_layouts_agree_with_single_runs(toy, layout):
    specs = _method_specs("baseline", "la-loss", "cb-focal", "ldam-drw")
    single, batched = _train(toy, "single", specs), _train(toy, layout, specs)
    # float64 round-off, amplified over 12 steps at lr 0.4; ldam-drw's cosine head (x30) amplifies it more:
    # measured 2e-8 under vmap against 5e-12 for cb-focal
    for a, b, tolerance in zip(single, batched, (1e-10, 1e-10, 1e-10, 1e-6)):
        assert _max_difference(a, b) < tolerance and a.failure is None and b.failure is None


def test_neutral_terms_give_the_recipe_s_own_smoothed_cross_entropy(toy):
    from imbalance.training.losses import neutral_terms
    plain = _train(toy, "single", [_specs()[0]])[0]
    spec = _specs()[0]
    neutral = _train(toy, "single", [NetworkSpec(indices=spec.indices, init_seed=1, batch_seed=11,
                                                 loss=neutral_terms(5))])[0]
    assert _max_difference(plain, neutral) < 1e-10


def test_ldam_drw_on_the_fast_recipe_has_a_cosine_head_and_drops_its_lr_at_the_switch(toy):
    r = _train(toy, "single", _method_specs("ldam-drw"))[0]
    assert r.model.cosine == 30.0
    recipe_lr = fast.learning_rate(TINY, TINY.iterations - 1)
    assert r.curve[-1]["lr"] == pytest.approx(0.01 * recipe_lr)      # the switch is at 80% of 12 iterations
    out = r.model.eval()(torch.rand(4, 3, 16, 16, dtype=torch.float64))
    assert out.abs().max() <= 30.0 + 1e-9


def test_a_second_stage_with_reinit_output_redraws_the_head_from_its_seed(toy):
    first = _train(toy, "single", [_specs()[0]])[0]
    spec = NetworkSpec(indices=np.arange(0, 40), init_seed=5, batch_seed=3, trainable="output",
                       init_from=first.model, reinit_output=True, shuffle=False)
    images, labels = toy
    zero = fast.fast_recipe_with(TINY, iterations=1, eval_interval=1, lr=1e-12)
    second = fast.train_fast_networks([spec], images, labels, zero, n_classes=5, layout="single",
                                      dtype=torch.float64)[0]
    w = (first.model.whiten_weight, first.model.whiten_bias)
    drawn, _ = fast.init_network(TINY, w, n_classes=5, seed=5, dtype=torch.float64)
    assert torch.allclose(second.model.head, drawn["head"], atol=1e-9)
    assert torch.equal(second.model.block1_conv1, first.model.block1_conv1)
