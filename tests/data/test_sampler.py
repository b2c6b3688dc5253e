"""ImbalancedSampler and make_imbalanced: exact counts, WeightedRandomSampler, DistributedSampler, README."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imbalance.data.profiles import imbalanced_subset, step_profile
from imbalance.data.resampling import oversample_indices, undersample_indices
from imbalance.sampling import ImbalancedSampler, make_imbalanced
from scipy.stats import chi2_contingency
from torch.utils.data import DistributedSampler, Subset, TensorDataset, WeightedRandomSampler

Y = np.array([0] * 6 + [1] * 2 + [2] * 1)        # positions 0-5 class 0, 6-7 class 1, 8 class 2
SKEWED = np.random.default_rng(5).permutation(np.repeat([0, 1, 2], [60, 15, 4]))
README = Path(__file__).resolve().parents[2] / "README.md"


def _classes(sampler, y=Y):
    return np.bincount(y[list(sampler)], minlength=3).tolist()


@pytest.mark.parametrize("method, level, counts", [
    ("ros", None, [6, 6, 6]), ("ros", 2, [6, 3, 3]), ("ros", 6, [6, 2, 1]),
    ("rus", None, [1, 1, 1]), ("rus", 2, [2, 2, 1]), ("rus", 6, [6, 2, 1]),
])
def test_ros_and_rus_epochs_have_the_exact_class_counts_of_their_level(method, level, counts):
    sampler = ImbalancedSampler(Y, method=method, level=level, seed=0)
    assert len(sampler) == sum(counts)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert _classes(sampler) == counts


def test_ros_epoch_keeps_every_example_and_rus_never_repeats_one():
    ros = list(ImbalancedSampler(SKEWED, method="ros", seed=3))
    assert set(ros) == set(range(SKEWED.size)) and len(ros) == 180
    rus = list(ImbalancedSampler(SKEWED, method="rus", seed=3))
    assert len(rus) == len(set(rus)) == 12


def test_epochs_are_reproducible_per_seed_and_epoch_and_differ_otherwise():
    # seed 0, epoch 0 (np.random.default_rng([0, 0])): pinned positions
    assert list(ImbalancedSampler(Y, method="ros", seed=0)) == [4, 8, 6, 2, 8, 8, 3, 7, 7, 7, 0, 8, 6, 5, 1, 8, 8, 7]
    # class-aware: classes (2, 0, 1) in one cycle, 4 examples per class draw (Kang et al.), cut at len 9
    assert list(ImbalancedSampler(Y, method="class-aware", seed=0)) == [8, 8, 8, 8, 5, 3, 2, 4, 7]
    a, b = ImbalancedSampler(SKEWED, method="sqrt", seed=1), ImbalancedSampler(SKEWED, method="sqrt", seed=1)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) == list(a)                # set_epoch fixes the epoch: iterating again repeats it
    a.set_epoch(2)
    assert list(a) != list(b)
    assert list(ImbalancedSampler(SKEWED, method="sqrt", seed=2)) != list(ImbalancedSampler(SKEWED, method="sqrt",
                                                                                           seed=1))


def _reference_epoch(y, key, method="ros"):
    """An epoch drawn by hand from the resampling functions (the sampler's documented rule)."""
    rng = np.random.default_rng(key)
    draw = oversample_indices if method == "ros" else undersample_indices
    return rng.permutation(draw(y, target_rho=1.0, random_state=rng)).tolist()


def test_without_set_epoch_each_iteration_draws_the_next_epoch_as_weighted_random_sampler_redraws():
    sampler = ImbalancedSampler(Y, method="ros", seed=0)
    first, second, third = list(sampler), list(sampler), list(sampler)
    # iteration n is epoch n of the seed: [seed, n]
    assert first == _reference_epoch(Y, [0, 0]) == [4, 8, 6, 2, 8, 8, 3, 7, 7, 7, 0, 8, 6, 5, 1, 8, 8, 7]
    assert second == _reference_epoch(Y, [0, 1]) == [8, 7, 1, 8, 4, 0, 8, 5, 7, 8, 7, 7, 7, 8, 3, 2, 8, 6]
    assert third == _reference_epoch(Y, [0, 2]) and len({tuple(first), tuple(second), tuple(third)}) == 3
    # a second sampler with the same seed replays the same sequence of epochs
    again = ImbalancedSampler(Y, method="ros", seed=0)
    assert [list(again) for _ in range(3)] == [first, second, third]
    # and every epoch keeps its exact class counts
    assert all(np.bincount(Y[e], minlength=3).tolist() == [6, 6, 6] for e in (first, second, third))


def test_a_dataloader_sees_a_new_draw_each_epoch_without_set_epoch():
    data = TensorDataset(torch.arange(SKEWED.size), torch.as_tensor(SKEWED))
    loader = torch.utils.data.DataLoader(data, batch_size=50, sampler=ImbalancedSampler(SKEWED, method="rus", seed=3))
    epochs = [torch.cat([x for x, _ in loader]).tolist() for _ in range(2)]
    assert epochs[0] == _reference_epoch(SKEWED, [3, 0], "rus") and epochs[1] == _reference_epoch(SKEWED, [3, 1], "rus")
    assert epochs[0] != epochs[1] and [len(e) for e in epochs] == [12, 12]


def test_a_torch_generator_seeds_each_epoch_as_random_sampler_does():
    draws = torch.Generator().manual_seed(7)     # the same stream the sampler's generator will give
    keys = [int(torch.empty((), dtype=torch.int64).random_(generator=draws).item()) for _ in range(2)]
    sampler = ImbalancedSampler(SKEWED, method="ros", generator=torch.Generator().manual_seed(7))
    assert [list(sampler), list(sampler)] == [_reference_epoch(SKEWED, [k]) for k in keys]
    assert keys[0] != keys[1]
    # a generator advanced by other users gives other epochs, as WeightedRandomSampler's would
    moved = torch.Generator().manual_seed(7)
    torch.rand(1, generator=moved)
    assert list(ImbalancedSampler(SKEWED, method="ros", generator=moved)) != _reference_epoch(SKEWED, [keys[0]])
    # with set_epoch, the generator's initial seed is the seed: every replica draws the same epoch
    fixed = ImbalancedSampler(SKEWED, method="ros", generator=torch.Generator().manual_seed(7))
    fixed.set_epoch(4)
    assert list(fixed) == list(fixed) == _reference_epoch(SKEWED, [7, 4])


@pytest.mark.parametrize("method, level, expected", [
    # Y has 6 / 2 / 1 examples: ros raises every class to round(6 / level), rus cuts to round(1 * level)
    ("ros", None, 18), ("ros", 2, 12), ("ros", 6, 9), ("rus", None, 3), ("rus", 2, 5), ("rus", 6, 9),
])
def test_len_is_one_epoch_of_the_resampled_set_not_the_dataset(method, level, expected):
    sampler = ImbalancedSampler(Y, method=method, level=level, seed=0)
    assert len(sampler) == expected == sum(1 for _ in sampler)
    assert len(ImbalancedSampler(Y, method=method, level=level, seed=0, num_replicas=2)) == -(-expected // 2)
    assert len(ImbalancedSampler(Y, method=method, level=level, seed=0, num_replicas=2, drop_last=True)) == expected // 2


def _wrs_counts(weights, n, seed):
    drawn = list(WeightedRandomSampler(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed)))
    return np.bincount(drawn, minlength=len(weights))


@pytest.mark.parametrize("method, class_weight", [("class-aware", lambda n: 1.0), ("sqrt", np.sqrt)])
def test_class_balanced_draws_agree_with_weighted_random_sampler(method, class_weight):
    n = SKEWED.size * 250
    counts = np.bincount(SKEWED)
    # WeightedRandomSampler's equivalent: example i of class c weighs class_weight(n_c) / n_c
    weights = np.array([class_weight(counts[c]) / counts[c] for c in SKEWED])
    ours = np.bincount(list(ImbalancedSampler(SKEWED, method=method, num_samples=n, seed=0)), minlength=SKEWED.size)
    theirs = _wrs_counts(torch.as_tensor(weights), n, seed=0)
    assert ours.sum() == theirs.sum() == n
    assert chi2_contingency(np.stack([ours, theirs])).pvalue > 1e-3
    # the same test tells the two methods apart (so it can fail): class-aware vs sqrt's weights
    other = np.sqrt if method == "class-aware" else (lambda n: 1.0)
    wrong = _wrs_counts(torch.as_tensor([other(counts[c]) / counts[c] for c in SKEWED]), n, seed=0)
    assert chi2_contingency(np.stack([ours, wrong])).pvalue < 1e-6


def test_ros_across_epochs_agrees_with_weighted_random_sampler_on_inverse_class_frequency():
    sampler = ImbalancedSampler(SKEWED, method="ros", seed=0)
    ours = np.zeros(SKEWED.size, dtype=np.int64)
    for epoch in range(100):
        sampler.set_epoch(epoch)
        ours += np.bincount(list(sampler), minlength=SKEWED.size)
    theirs = _wrs_counts(torch.as_tensor(1.0 / np.bincount(SKEWED)[SKEWED]), int(ours.sum()), seed=1)
    assert chi2_contingency(np.stack([ours, theirs])).pvalue > 1e-3


@pytest.mark.parametrize("method, drop_last", [("ros", False), ("ros", True), ("rus", False), ("sqrt", True)])
@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_shards_deal_the_epoch_as_distributed_sampler_does(method, drop_last, replicas):
    kwargs = dict(method=method, seed=4, num_replicas=replicas, drop_last=drop_last)
    shards = [ImbalancedSampler(SKEWED, rank=r, **kwargs) for r in range(replicas)]
    for s in shards:
        s.set_epoch(2)
    epoch = shards[0].epoch_indices(2)
    for r, shard in enumerate(shards):
        positions = list(DistributedSampler(range(epoch.size), num_replicas=replicas, rank=r, shuffle=False,
                                            drop_last=drop_last))
        assert list(shard) == epoch[positions].tolist()
        assert len(shard) == len(positions)


def test_shards_are_disjoint_and_cover_the_epoch_when_it_divides_evenly():
    shards = [ImbalancedSampler(Y, method="ros", seed=1, num_replicas=3, rank=r) for r in range(3)]
    dealt = [list(s) for s in shards]                   # 18 positions -> 6 per replica
    assert [len(d) for d in dealt] == [6, 6, 6]
    epoch = shards[0].epoch_indices(0)
    slots = [set(range(r, 18, 3)) for r in range(3)]    # which slots of the epoch each replica got
    assert all(epoch[sorted(s)].tolist() == d for s, d in zip(slots, dealt))
    assert set.union(*slots) == set(range(18)) and sum(map(len, slots)) == 18
    assert sorted(sum(dealt, [])) == sorted(epoch.tolist())


class _WithTargets(torch.utils.data.Dataset):
    def __init__(self, targets):
        self.targets = targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.zeros(1), self.targets[i]


def test_labels_come_from_sequences_tensors_and_datasets_alike():
    expected = list(ImbalancedSampler(Y.tolist(), method="ros", seed=0))
    as_tensor = ImbalancedSampler(torch.as_tensor(Y), method="ros", seed=0)
    with_targets = ImbalancedSampler(_WithTargets(torch.as_tensor(Y)), method="ros", seed=0)
    tensors = TensorDataset(torch.zeros(9, 1), torch.as_tensor(Y))
    with_getter = ImbalancedSampler(tensors, method="ros", seed=0, label_getter=lambda ds: ds.tensors[1])
    assert list(as_tensor) == list(with_targets) == list(with_getter) == expected
    # a Subset takes its parent's labels at its indices
    parent = _WithTargets(np.concatenate([Y, [1, 1, 1]]))
    assert list(ImbalancedSampler(Subset(parent, range(9)), method="ros", seed=0)) == expected


def test_make_imbalanced_returns_the_profiles_subset_as_a_list():
    labels = np.repeat(np.arange(4), 50)
    indices = make_imbalanced(_WithTargets(labels), profile="step", rho=10, mu=0.5, seed=3)
    assert isinstance(indices, list) and all(isinstance(i, int) for i in indices)
    assert indices == imbalanced_subset(labels, profile="step", rho=10, mu=0.5, random_state=3).indices.tolist()
    assert sorted(np.bincount(labels[indices]).tolist()) == step_profile(n_classes=4, n_max=50, mu=0.5,
                                                                         rho=10).tolist() == [5, 5, 50, 50]
    assert make_imbalanced(labels, profile="linear", rho=5, seed=0) != make_imbalanced(labels, profile="linear",
                                                                                      rho=5, seed=1)


@pytest.mark.parametrize("call, message", [
    (lambda: ImbalancedSampler(Y, method="smote"), "method must be one of"),
    (lambda: ImbalancedSampler(Y, method="sqrt", level=2), "level applies to"),
    (lambda: ImbalancedSampler(Y, method="ros", level=0.5), "level must be a number >= 1"),
    (lambda: ImbalancedSampler(Y, method="rus", num_samples=5), "num_samples applies to"),
    (lambda: ImbalancedSampler(Y, method="sqrt", num_samples=0), "num_samples must be a positive integer"),
    (lambda: ImbalancedSampler(Y, seed=-1), "seed must be a non-negative integer"),
    (lambda: ImbalancedSampler(Y, num_replicas=2, rank=2), r"rank must be an integer in \[0, 1\]"),
    (lambda: ImbalancedSampler(Y, method="rus", num_replicas=4, drop_last=True), "drop_last=True leaves nothing"),
    (lambda: ImbalancedSampler(Y.astype(float)), "labels must be a non-empty 1-d sequence of integer"),
    (lambda: ImbalancedSampler(TensorDataset(torch.zeros(3))), "without .targets: pass label_getter"),
    (lambda: ImbalancedSampler(Y).set_epoch(-1), "epoch must be a non-negative integer"),
    (lambda: ImbalancedSampler(Y, seed=1, generator=torch.Generator()), "pass seed or generator, not both"),
    (lambda: ImbalancedSampler(Y, generator=np.random.default_rng(0)), "generator must be a torch.Generator"),
    (lambda: make_imbalanced(Y, rho=10), "mu is required for the step profile"),
])
def test_sampler_rejects_bad_input_naming_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_importing_sampling_does_not_import_torch():
    code = ("import sys, imbalance.sampling as s; assert 'torch' not in sys.modules; "
            "s.ImbalancedSampler; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_training_loop_example_runs_and_balances_each_epoch(capsys):
    section = README.read_text().split("## Your own training loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 30
    namespace = {}
    exec(compile(code, "README.md (Your own training loop)", "exec"), namespace)
    labels, train, seen = np.array(namespace["labels"]), namespace["train"], namespace["seen"]
    skewed = np.bincount(labels[train])
    assert skewed.max() / skewed.min() == pytest.approx(10, rel=0.1)      # the subset is skewed ...
    assert seen.tolist() == [skewed.max()] * 4                           # ... and ros balances the epoch
    assert capsys.readouterr().out.count("epoch ") == 2
