"""Issue 26, item 3: a natural study's dry run lists its class counts, and images a model cannot take are
refused before any training (dry run included), naming the setting that fixes them; nothing trains here."""
from pathlib import Path

import numpy as np
import pytest
from fixtures.stub import StubPool
from imbalance.cli import main
from imbalance.study import runner
from imbalance.study.params import params_from_dict

ROOT = Path(__file__).resolve().parents[2]


def _folder(root: Path, side: int, counts=(5, 3, 2)) -> Path:
    from PIL import Image
    for split, per_class in (("train", counts), ("val", (2,) * len(counts))):
        for c, n in enumerate(per_class):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((side, side), 40 * c, np.uint8), mode="L").save(folder / f"{i}.png")
    return root


def _params(root: Path, **extra):
    return params_from_dict({"study": "own", "dataset": "imagefolder", "data_root": str(root), "imbalance": "natural",
                             "methods": ["baseline", "ros"], "repeats": 3, "recipe": "lenet5-mnist", **extra})


@pytest.mark.parametrize("side, recipe, fix", [(8, "lenet5-mnist", r"image_size: 28 \(lenet5's own input size; it takes 16 px and up\)"),
                                               (8, "allcnn-cifar10", "image_size: 9 or more")])
def test_images_too_small_for_the_model_are_refused_before_training_with_the_fix(tmp_path, side, recipe, fix):
    """By hand: LeNet-5's two valid 5x5 convolutions and 2x2 pools leave ((16 - 4) / 2 - 4) / 2 = 1 px of 16 and
    nothing of 15 (28 is its own size); All-CNN-C's two padded stride-2 convolutions leave 3 px of 9 for its
    unpadded 3x3 convolution, and 2 of 8."""
    params = _params(_folder(tmp_path / "data", side), recipe=recipe)
    pool = StubPool()
    for dry_run in (True, False):
        with pytest.raises(ValueError, match=rf"the images are 8x8 pixels, which recipe '{recipe}' .* cannot take "
                                             rf"\(.*\); set {fix}"):
            runner.run_study(params, outputs_dir=tmp_path / "out", dry_run=dry_run, pool=pool)
    assert pool.submitted == []                                      # nothing was sent to train
    runner.check_model_input(_params(tmp_path / "data", recipe=recipe, image_size=int(fix.split()[1])))   # the fix


def test_the_check_reads_the_size_an_image_folder_and_an_npz_give_the_model(tmp_path):
    assert runner.model_input(_params(_folder(tmp_path / "a", 20))) == (1, 20, 20)
    assert runner.model_input(_params(tmp_path / "a", image_size=32)) == (1, 32, 32)
    np.savez(tmp_path / "b.npz", x_train=np.zeros((4, 10, 10, 3), np.uint8), y_train=np.array([0, 0, 1, 1]),
             x_test=np.zeros((2, 10, 10, 3), np.uint8), y_test=np.array([0, 1]))
    npz = params_from_dict({"study": "n", "dataset": "npz", "data_root": str(tmp_path / "b.npz"),
                            "imbalance": "natural", "methods": ["baseline"], "recipe": "lenet5-mnist"})
    assert runner.model_input(npz) == (3, 10, 10)
    with pytest.raises(ValueError, match=r"the images are 10x10 pixels.*; resize the arrays to 28x28 \(lenet5's own input size; it takes 16 px and up\)"):
        runner.check_model_input(npz)
    runner.check_model_input(_params(tmp_path / "a"))                  # 20 px: LeNet-5 takes it


def test_the_dry_run_of_a_natural_study_lists_its_class_counts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "_estimate", lambda *a, **k: runner.Estimate("(not timed in this test)"))
    root = _folder(tmp_path / "data", 28, counts=(12, 5, 1))
    params = tmp_path / "own.yaml"
    params.write_text(f"study: own\ndataset: imagefolder\ndata_root: {root}\nimbalance: natural\n"
                      "methods: [baseline, ros]\nrepeats: 3\nrecipe: lenet5-mnist\nvalidation: 0.1\n")
    assert main(["run", str(params), "--dry-run", "--outputs", str(tmp_path / "out")]) == 0
    assert ("natural  training set (the data's own counts): class0 12, class1 5, class2 1 (18 images, rho 12; "
            "before the 0.1 validation split)") in capsys.readouterr().out
