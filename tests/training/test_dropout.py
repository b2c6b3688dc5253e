"""All-CNN-C's dropout: masks from each network's own seeded streams, never the global RNG."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imbalance.training.batched import NetworkSpec, intra_op_threads, train_networks
from imbalance.training.models import (
    SeededDropout,
    allcnn,
    dropout_layers,
    dropout_masks,
    dropout_seed,
    dropout_shapes,
    lenet5,
    reseed_dropout,
)
from imbalance.training.recipes import RECIPES, recipe_with
from scipy import stats
from torch.func import functional_call, grad, vmap

SMALL = (4, 3, 16, 16)  # All-CNN-C runs on 16x16 inputs too (conv7 then sees 4x4): fast tests


def _steps(model, x, n=3):
    return [model(x) for _ in range(n)]


def test_same_seed_gives_bit_identical_train_mode_outputs_over_several_steps():
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(0))
    rng_before = torch.random.get_rng_state()
    a, b, c = (_steps(allcnn(seed=s).train(), x) for s in (7, 7, 8))
    assert torch.equal(torch.random.get_rng_state(), rng_before)      # the global RNG is never drawn
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], a[1])                                  # a fresh mask every step
    assert all(not torch.equal(p, q) for p, q in zip(a, c))


def test_a_network_s_masks_do_not_depend_on_the_global_rng_or_other_networks():
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(0))
    alone = _steps(allcnn(seed=3).train(), x)
    torch.manual_seed(12345)
    other, mine = allcnn(seed=4).train(), allcnn(seed=3).train()
    interleaved = []
    for _ in range(3):                      # another network's draws between this network's steps
        other(x)
        torch.rand(100)
        interleaved.append(mine(x))
    assert all(torch.equal(p, q) for p, q in zip(alone, interleaved))


def test_eval_mode_is_deterministic_and_equals_the_network_without_dropout():
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(1))
    model = allcnn(seed=2).eval()
    plain = allcnn(seed=2, input_dropout=0.0, hidden_dropout=0.0).train()   # same weights, p = 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain.parameters()))
    first = model(x)
    assert torch.equal(first, model(x)) and torch.equal(first, plain(x))
    assert not torch.equal(first, model.train()(x))


def test_dropout_keeps_each_element_with_probability_1_minus_p_and_scales_by_its_inverse():
    layer = SeededDropout(0.2, seed=0)
    y = layer(torch.ones(200_000))
    kept = int((y != 0).sum())
    assert set(torch.unique(y).tolist()) == {0.0, 1 / 0.8}
    # two-sided binomial test of the keep rate 0.8 (scipy), at the 0.1% level
    assert stats.binomtest(kept, 200_000, 0.8).pvalue > 1e-3


def test_masks_follow_logical_order_so_channels_last_inputs_get_the_same_outputs():
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(5))
    a = allcnn(seed=1).train()(x)
    b = allcnn(seed=1).to(memory_format=torch.channels_last).train()(
        x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-6)   # convolution kernels differ by layout; masks do not
    layer_a, layer_b = SeededDropout(0.5, seed=9), SeededDropout(0.5, seed=9)
    assert torch.equal(layer_a(x), layer_b(x.contiguous(memory_format=torch.channels_last)))


def test_reseed_restarts_a_network_s_streams_and_layers_get_distinct_ones():
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(0))
    model = allcnn(seed=5).train()
    first = model(x)
    model(x)
    assert torch.equal(reseed_dropout(model, 5)(x), first)
    seeds = [m.seed for m in dropout_layers(model).values()]
    assert seeds == [dropout_seed(5, i) for i in range(3)] and len(set(seeds)) == 3
    assert dropout_seed(5, 0) != 5 and dropout_seed(5, 0) != dropout_seed(6, 0)


def test_a_copied_network_continues_its_original_s_stream():
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(0))
    model = allcnn(seed=5).train()
    model(x)
    twin = copy.deepcopy(model)
    assert torch.equal(model(x), twin(x))


def test_all_cnn_c_has_the_prototxt_s_dropout_layers():
    ps = {name: m.p for name, m in dropout_layers(allcnn(seed=0)).items()}
    assert ps == {"drop1": 0.2, "drop2": 0.5, "drop3": 0.5}
    names = [n for n, _ in allcnn(seed=0).named_children()]
    assert names.index("drop2") == names.index("relu3") + 1 and names.index("drop3") == names.index("relu6") + 1


@pytest.mark.parametrize("p", [-0.1, 1.0, "0.5", True])
def test_dropout_rejects_a_probability_outside_0_1_naming_it(p):
    with pytest.raises(ValueError, match=r"dropout p must be a number in \[0, 1\)"):
        SeededDropout(p, seed=0)


def test_threads_layout_trains_dropout_networks_bit_identically_to_one_at_a_time():
    # tiny: 2 networks x 3 SGD steps of 4 random 16x16 images; 'scale' skips the ZCA fit
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(40) % 10
    recipe = recipe_with(RECIPES["allcnn-cifar10"], iterations=3, eval_interval=3, batch_size=4,
                         preprocessing="scale", lr_search=())
    specs = [NetworkSpec(indices=np.arange(40), init_seed=k, batch_seed=10 + k) for k in range(2)]
    with intra_op_threads(1):    # the threads layout runs each network on one intra-op thread
        single = train_networks(specs, images, labels, recipe, n_classes=10, layout="single", progress=False)
    together = train_networks(specs, images, labels, recipe, n_classes=10, layout="threads", workers=2,
                              progress=False)
    assert all(torch.equal(p, q) for a, b in zip(single, together)
               for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert [r.curve for r in single] == [r.curve for r in together]
    assert single[0].curve[0]["train_loss"] != single[1].curve[0]["train_loss"]


def test_stacked_masks_passed_to_a_vmapped_forward_equal_each_network_s_own_forward():
    # the hook batched.py's vmap layout needs: per-network masks from dropout_masks, as buffers
    models = [allcnn(seed=s).double() for s in (0, 1, 2)]
    alone = [allcnn(seed=s).double() for s in (0, 1, 2)]
    x = torch.randn((3,) + SMALL, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    base = copy.deepcopy(models[0]).to("meta")
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
              for n, _ in models[0].named_parameters()}
    call = vmap(lambda p, x: functional_call(base, p, (x,)))
    shapes = dropout_shapes(models[0], SMALL)
    assert shapes == {"drop1": SMALL, "drop2": (4, 96, 8, 8), "drop3": (4, 192, 4, 4)}
    for _ in range(2):
        masks = dropout_masks(models, shapes, device="cpu", dtype=torch.float64)
        assert sorted(masks) == ["drop1.mask", "drop2.mask", "drop3.mask"]
        assert masks["drop3.mask"].shape == (3, 4, 192, 4, 4)
        together = call({**params, **masks}, x)
        expected = torch.stack([m(x[j]) for j, m in enumerate(alone)])
        assert torch.allclose(together, expected, rtol=0, atol=1e-12)   # float64 round-off only


def test_a_model_without_dropout_needs_no_masks():
    model = lenet5(seed=0)
    assert dropout_shapes(model, (4, 1, 28, 28)) == {} and dropout_masks([model], {}, device="cpu") == {}


def test_vmapped_gradients_with_stacked_masks_equal_each_network_s_own_backward():
    # batched.py's step is vmap(grad(loss)) over stacked parameters: masks ride along as inputs
    models = [allcnn(seed=s).double() for s in (3, 4)]
    alone = [allcnn(seed=s).double() for s in (3, 4)]
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2,) + SMALL, dtype=torch.float64, generator=g)
    y = torch.randint(0, 10, (2, SMALL[0]), generator=g)
    base = copy.deepcopy(models[0]).to("meta")
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
              for n, _ in models[0].named_parameters()}

    def loss_fn(p, buffers, x, y):
        return F.cross_entropy(functional_call(base, {**p, **buffers}, (x,)), y)
    masks = dropout_masks(models, dropout_shapes(models[0], SMALL), device="cpu", dtype=torch.float64)
    grads = vmap(grad(loss_fn))(params, masks, x, y)
    for j, m in enumerate(alone):
        expected = torch.autograd.grad(F.cross_entropy(m(x[j]), y[j]), list(m.parameters()))
        for (name, _), e in zip(m.named_parameters(), expected):
            assert torch.allclose(grads[name][j], e, rtol=1e-9, atol=1e-12), name


def _tiny_cifar(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    return images, torch.arange(n) % 10


def test_vmap_layout_trains_dropout_networks_as_each_would_alone_float64():
    # 3 All-CNN-C networks x 4 SGD steps on 16x16 images, with test curves (eval mode) and a
    # two-phase copy of a dropout network (its streams restart from its spec's init_seed)
    images, labels = _tiny_cifar()
    test = _tiny_cifar(20, seed=1)
    recipe = recipe_with(RECIPES["allcnn-cifar10"], iterations=4, eval_interval=2, batch_size=4,
                         preprocessing="scale", lr_search=(), base_lr=0.01)
    pre = allcnn(seed=11).double()
    pre.train()(torch.randn(SMALL, dtype=torch.float64))      # its streams have moved on: a copy must not continue them
    specs = [NetworkSpec(indices=np.arange(40), init_seed=k, batch_seed=10 + k, lr_scale=(1.0, 0.5)[k % 2])
             for k in range(2)] + [NetworkSpec(indices=np.arange(40), init_seed=5, batch_seed=3, trainable="output",
                                               init_from=pre, lr_scale=0.1)]
    kw = dict(n_classes=10, dtype=torch.float64, test=test, progress=False)
    single = train_networks(specs, images, labels, recipe, layout="single", **kw)
    stacked = train_networks(specs, images, labels, recipe, layout="vmap", **kw)
    for a, b in zip(single, stacked):
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.allclose(p, q, rtol=1e-10, atol=1e-12)
        assert [pt["test_accuracy"] for pt in a.curve] == [pt["test_accuracy"] for pt in b.curve]
        assert np.allclose([pt["train_loss"] for pt in a.curve], [pt["train_loss"] for pt in b.curve], rtol=1e-6)
    assert single[0].curve[0]["train_loss"] != single[1].curve[0]["train_loss"]
    # the two-phase copy's masks came from init_seed 5's streams, not from where `pre` had left off
    from imbalance.data.images import ResidentImages
    from imbalance.training.single import train_network
    source = ResidentImages(single[2].preprocessor.transform(images).double())

    def alone(model):
        return train_network(model, source, labels, np.arange(40), recipe, seed=3, lr_scale=0.1,
                             trainable=("conv8", "conv9"), progress=False).model
    reseeded, continued = alone(reseed_dropout(copy.deepcopy(pre), 5)), alone(copy.deepcopy(pre))
    close = lambda m: all(torch.allclose(p, q, rtol=1e-10, atol=1e-12)  # noqa: E731 (channels-last kernels there)
                          for p, q in zip(m.parameters(), single[2].model.parameters()))
    assert close(reseeded) and not close(continued)


def test_vmap_layout_leaves_the_global_rng_alone_and_its_evaluation_uses_no_dropout():
    images, labels = _tiny_cifar()
    recipe = recipe_with(RECIPES["allcnn-cifar10"], iterations=2, eval_interval=2, batch_size=4,
                         preprocessing="scale", lr_search=())
    specs = [NetworkSpec(indices=np.arange(40), init_seed=k, batch_seed=k) for k in range(2)]
    before = torch.random.get_rng_state()
    (a, b) = train_networks(specs, images, labels, recipe, n_classes=10, layout="vmap", dtype=torch.float64,
                            test=_tiny_cifar(20, seed=1), progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    from imbalance.training.batched import predict_networks
    x = torch.randn((6, 3, 16, 16), dtype=torch.float64)
    logits = predict_networks([a.model, b.model], x)
    assert torch.allclose(logits[0], a.model.eval()(x), rtol=0, atol=1e-12)   # eval mode: deterministic, no masks
