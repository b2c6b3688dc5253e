"""The three networks: shapes, parameter counts worked out from the layer tables, seeded init."""
import math

import pytest
import torch
from imbalance.training.models import MODELS, allcnn, build_model, lenet5, resnet10
from torch import nn


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn(c):
    return 2 * c  # weight and bias


def test_lenet5_maps_28x28_digits_to_10_scores_with_431080_parameters():
    model = lenet5(seed=0)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert _count(model) == 431_080
    # by hand: conv 20@5x5, conv 50@5x5 on 20 maps, fc 50*4*4 -> 500, fc 500 -> 10
    assert _count(model) == conv(1, 20, 5) + conv(20, 50, 5) + (800 * 500 + 500) + (500 * 10 + 10)


def test_allcnn_c_maps_32x32_images_to_class_scores_with_the_table_s_parameter_count():
    model = allcnn(n_classes=10, seed=0)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    expected = (conv(3, 96, 3) + conv(96, 96, 3) + conv(96, 96, 3)            # 32x32, 32x32, /2
                + conv(96, 192, 3) + conv(192, 192, 3) + conv(192, 192, 3)    # 16x16, 16x16, /2
                + conv(192, 192, 3) + conv(192, 192, 1) + conv(192, 10, 1))   # 6x6 (no pad), 1x1s
    assert _count(model) == expected == 1_369_738


def test_allcnn_c_has_the_authors_layer_list_with_relu_after_every_conv_and_three_dropouts():
    # mateuszbuda/ALL-CNN ALL_CNN_C_train_val.prototxt, layer by layer
    kinds = [type(m).__name__ for m in allcnn(seed=0)]
    conv, relu, drop = "Conv2d", "ReLU", "SeededDropout"
    assert kinds == [drop, conv, relu, conv, relu, conv, relu, drop,
                     conv, relu, conv, relu, conv, relu, drop,
                     conv, relu, conv, relu, conv, relu, "AdaptiveAvgPool2d", "Flatten"]
    assert not any(isinstance(m, nn.Dropout) for m in allcnn(seed=0).modules())  # global-RNG dropout


def test_allcnn_c_scores_are_non_negative_after_the_final_relu():
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (allcnn(seed=0).eval()(x) >= 0).all()


def test_resnet10_has_one_basic_block_per_stage_and_the_hand_counted_parameters():
    model = resnet10(seed=0)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)
    stages = 0
    for i, (c_in, c_out) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)], start=1):
        shortcut = 0 if c_in == c_out else conv(c_in, c_out, 1, bias=False) + bn(c_out)
        stages += conv(c_in, c_out, 3, False) + bn(c_out) + conv(c_out, c_out, 3, False) \
            + bn(c_out) + shortcut
        assert len(getattr(model, f"layer{i}")) == 1
    expected = conv(3, 64, 7, bias=False) + bn(64) + stages + 512 * 1000 + 1000
    assert _count(model) == expected == 5_418_792


def test_resnet10_accepts_other_channel_and_class_counts():
    model = resnet10(n_classes=7, in_channels=1, seed=0)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_gives_bit_identical_weights_without_touching_the_global_rng(name):
    rng_before = torch.random.get_rng_state()
    a = build_model(name, n_classes=10, in_channels=3, seed=5).state_dict()
    b = build_model(name, n_classes=10, in_channels=3, seed=5).state_dict()
    c = build_model(name, n_classes=10, in_channels=3, seed=6).state_dict()
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert all(torch.isfinite(v.float()).all() for v in a.values())  # nothing left uninitialised


def test_lenet5_and_allcnn_use_caffe_s_xavier_filler_and_zero_biases():
    for model in (lenet5(seed=0), allcnn(seed=0)):
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                assert torch.count_nonzero(p) == 0, name
            else:  # U(+-sqrt(3 / fan_in)): variance 1 / fan_in
                fan_in = p.shape[1] * p[0, 0].numel()
                bound = math.sqrt(3 / fan_in)
                assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound, name
                if p.numel() > 10_000:
                    assert p.var().item() == pytest.approx(1 / fan_in, rel=0.05), name


def test_resnet10_init_is_torchvision_s_kaiming_fan_out_with_unit_batch_norm():
    model = resnet10(seed=0)
    w = model.layer4[0].conv2.weight  # 512 x 512 x 3 x 3: std sqrt(2 / (512 * 9))
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.01)
    assert torch.equal(model.bn1.weight, torch.ones(64)) and torch.equal(model.bn1.bias, torch.zeros(64))
    assert torch.equal(model.bn1.running_var, torch.ones(64)) and model.bn1.num_batches_tracked == 0


def test_resnet10_fc_is_caffe_s_msra_filler_fan_in_with_a_zero_bias():
    fc = resnet10(seed=0).fc                 # 1000 x 512: N(0, 2 / 512), 512,000 draws
    assert torch.count_nonzero(fc.bias) == 0
    assert fc.weight.mean().item() == pytest.approx(0, abs=3 * math.sqrt(2 / 512 / fc.weight.numel()))
    assert fc.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.01)
    assert resnet10(n_classes=10, seed=0).fc.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)


@pytest.mark.parametrize("name, expected", [("lenet5", {"fc2"}), ("allcnn", {"conv8", "conv9"}),
                                            ("resnet10", {"fc"})])
def test_output_layers_name_the_last_layers_fine_tuned_in_phase_two(name, expected):
    model = build_model(name, n_classes=10, in_channels=3, seed=0)
    assert set(model.output_layers) == expected
    names = [n for n, _ in model.named_parameters()]
    tuned = [n for n in names if n.split(".")[0] in expected]
    assert tuned == names[-len(tuned):] and len(tuned) == 2 * len(expected)  # weights and biases


def test_allcnn_output_layers_are_the_two_1x1_convolutions():
    model = allcnn(seed=0)
    assert [getattr(model, n).kernel_size for n in model.output_layers] == [(1, 1), (1, 1)]


def test_build_model_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match="lenet5, allcnn, resnet10"):
        build_model("vgg16", n_classes=10, in_channels=3, seed=0)


@pytest.mark.parametrize("kwargs, word", [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
                                          ({"seed": 0, "n_classes": 0}, "n_classes"),
                                          ({"seed": 0, "image_size": 8}, "image_size")])
def test_builders_reject_bad_arguments_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        lenet5(**kwargs)


def test_lenet_fits_its_input_layer_to_the_image_size_and_the_28_pixel_default_is_unchanged():
    from imbalance.training.models import MODELS, build_model, sized_model
    assert sized_model("lenet5", (28, 28)) == "lenet5" and sized_model("allcnn", (50, 70)) == "allcnn"
    key = sized_model("lenet5", (32, 40))
    assert key == "lenet5@32x40" and key in MODELS
    net = build_model(key, n_classes=3, in_channels=3, seed=0)
    assert net(torch.zeros(2, 3, 32, 40)).shape == (2, 3)
    assert net.fc1.in_features == 50 * 5 * 7           # ((32-4)//2-4)//2 = 5, ((40-4)//2-4)//2 = 7
    default, same = build_model("lenet5", n_classes=10, in_channels=1, seed=4), lenet5(seed=4)
    assert all(torch.equal(a, b) for a, b in zip(default.parameters(), same.parameters()))
