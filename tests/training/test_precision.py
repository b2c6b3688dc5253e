"""The recipe's precision (issue 14): fp32 stays the paper's arithmetic; bf16 autocast is opt-in."""
import numpy as np
import pytest
import torch
from imbalance.data.datasets import load_dataset
from imbalance.training.batched import NetworkSpec, train_networks
from imbalance.training.recipes import RECIPES, recipe_with

LAYOUTS = ["single", "vmap", "gemm"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-sample")


def _train(digits, layout, **recipe_fields):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=10, eval_interval=5, batch_size=16, **recipe_fields)
    specs = [NetworkSpec(indices=np.arange(400), init_seed=k, batch_seed=k) for k in range(2)]
    return train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10, layout=layout,
                          progress=False)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fp32_precision_is_bit_identical_to_the_default_recipe(digits, layout):
    assert RECIPES["lenet5-mnist"].precision == "fp32"
    default, fp32 = _train(digits, layout), _train(digits, layout, precision="fp32")
    assert all(torch.equal(p, q) for a, b in zip(default, fp32) for p, q in zip(a.model.parameters(),
                                                                                 b.model.parameters()))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_precision_trains_with_fp32_weights_and_stays_near_fp32(digits, layout):
    fp32, bf16 = _train(digits, layout), _train(digits, layout, precision="bf16")
    for a, b in zip(fp32, bf16):
        assert all(p.dtype == torch.float32 for p in b.model.parameters())
        assert not b.diverged and all(np.isfinite(pt["train_loss"]) for pt in b.curve)
        rel = max(((p - q).abs().max() / p.abs().max()).item() for p, q in zip(a.model.parameters(),
                                                                                b.model.parameters()))
        assert rel > 0                 # bf16 products (8-bit mantissa) change the weights (SGD amplifies it)...
        # ...but not the training: the last interval's loss within 10% of fp32's
        assert abs(a.curve[-1]["train_loss"] - b.curve[-1]["train_loss"]) < 0.1 * a.curve[-1]["train_loss"]


def test_an_unknown_precision_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match=r"precision must be one of fp32, tf32, bf16, got 'fp16'"):
        recipe_with(RECIPES["lenet5-mnist"], precision="fp16")
