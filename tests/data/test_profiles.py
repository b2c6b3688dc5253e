"""Imbalance profiles and subsampling: exact counts against the paper's definitions, by hand."""
import numpy as np
import pytest
from imbalance.data.profiles import (
    exponential_profile,
    imbalanced_subset,
    linear_profile,
    profile_counts,
    step_profile,
    subset_counts,
)


def test_step_profile_matches_paper_definition_for_mnist_cap():
    # MNIST: 10 classes capped at 5,000; mu=0.5, rho=10 -> five classes of 500, five of 5,000
    assert step_profile(n_classes=10, n_max=5000, mu=0.5, rho=10).tolist() == [500] * 5 + [5000] * 5


def test_step_profile_extreme_ratio_keeps_one_example():
    assert step_profile(n_classes=10, n_max=5000, mu=0.9, rho=5000).tolist() == [1] * 9 + [5000]
    assert step_profile(n_classes=10, n_max=50, mu=0.1, rho=5000).tolist() == [1] + [50] * 9


def test_linear_profile_interpolates_between_minority_and_majority():
    assert linear_profile(n_classes=10, n_max=5000, rho=10).tolist() == list(range(500, 5001, 500))
    # hand-worked rounding: 33.33, 55.56, 77.78, 100 -> 33, 56, 78, 100
    assert linear_profile(n_classes=4, n_max=100, rho=3).tolist() == [33, 56, 78, 100]


def test_exponential_profile_is_geometric():
    assert exponential_profile(n_classes=3, n_max=1000, rho=100).tolist() == [10, 100, 1000]


def test_rho_one_is_balanced():
    for profile, mu in [("step", 0.5), ("linear", None), ("exponential", None)]:
        assert set(profile_counts(profile, n_classes=10, n_max=70, rho=1, mu=mu).tolist()) == {70}


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_classes=10, n_max=100, mu=0.5, rho=0.5), "rho must be a number >= 1"),
    (dict(n_classes=10, n_max=100, mu=0.0, rho=10), "mu must be in the open interval (0, 1)"),
    (dict(n_classes=10, n_max=100, mu=1.0, rho=10), "mu must be in the open interval (0, 1)"),
    (dict(n_classes=10, n_max=100, mu=0.01, rho=10), "mu=0.01 gives zero minority classes"),
    (dict(n_classes=10, n_max=100, mu=0.97, rho=10), "makes all 10 classes minority"),
    (dict(n_classes=10, n_max=0, mu=0.5, rho=10), "n_max must be an integer >= 1"),
    (dict(n_classes=1, n_max=10, mu=0.5, rho=10), "n_classes must be an integer >= 2"),
])
def test_step_profile_rejects_bad_input_naming_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        step_profile(**kwargs)


def test_unknown_profile_and_misplaced_mu_are_errors():
    with pytest.raises(ValueError, match=r"profile must be one of \('step', 'linear', 'exponential'\), got 'cubic'"):
        profile_counts("cubic", n_classes=10, n_max=10, rho=2)
    with pytest.raises(ValueError, match="mu must be None for the 'linear' profile"):
        profile_counts("linear", n_classes=10, n_max=10, rho=2, mu=0.5)
    with pytest.raises(ValueError, match="mu is required for the step profile"):
        profile_counts("step", n_classes=10, n_max=10, rho=2)


BALANCED = np.repeat(np.arange(10), 100)  # 10 classes x 100 examples, labels sorted


def test_subset_with_fixed_seed_gives_exact_minority_classes_and_counts():
    s = imbalanced_subset(BALANCED, profile="step", rho=10, mu=0.3, n_max=100, random_state=0)
    assert s.minority_classes == (2, 4, 6)
    assert s.counts.tolist() == [100, 100, 10, 100, 10, 100, 10, 100, 100, 100]
    assert len(s.indices) == 730 and np.bincount(BALANCED[s.indices]).tolist() == s.counts.tolist()
    assert len(np.unique(s.indices)) == 730  # within a class: without replacement


def test_subset_repeats_are_deterministic_and_differ_between_seeds():
    a = imbalanced_subset(BALANCED, profile="step", rho=10, mu=0.3, n_max=100, random_state=0)
    b = imbalanced_subset(BALANCED, profile="step", rho=10, mu=0.3, n_max=100, random_state=0)
    c = imbalanced_subset(BALANCED, profile="step", rho=10, mu=0.3, n_max=100, random_state=1)
    assert np.array_equal(a.indices, b.indices)
    assert c.minority_classes == (4, 7, 8) and not np.array_equal(a.indices, c.indices)


def test_lowest_rule_nests_minority_classes_as_mu_grows():
    sets = [set(imbalanced_subset(BALANCED, profile="step", rho=10, mu=mu, n_max=100, minority="lowest",
                                  random_state=s).minority_classes) for s, mu in enumerate([0.2, 0.5, 0.8])]
    assert sets == [{0, 1}, {0, 1, 2, 3, 4}, set(range(8))]


def test_linear_subset_with_lowest_rule_orders_sizes_by_label():
    s = imbalanced_subset(BALANCED, profile="linear", rho=10, n_max=100, minority="lowest", random_state=0)
    assert s.counts.tolist() == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_scarcity_rule_makes_naturally_small_classes_minority():
    # class 3 has only 40 examples: with n_max=100 it must be minority and keep all it has
    labels = np.concatenate([np.repeat([0, 1, 2], 100), np.full(40, 3), np.repeat([4, 5, 6, 7, 8, 9], 100)])
    s = imbalanced_subset(labels, profile="step", rho=10, mu=0.2, n_max=100, minority="scarcity", random_state=0)
    assert 3 in s.minority_classes and len(s.minority_classes) == 2
    assert s.counts[3] == 10 and sorted(s.counts.tolist()) == [10, 10] + [100] * 8


def test_subset_rejects_n_max_larger_than_a_class():
    labels = np.concatenate([np.repeat(np.arange(9), 100), np.full(50, 9)])
    with pytest.raises(ValueError, match=r"n_max=100 is larger than class 9 has \(50 examples\)"):
        imbalanced_subset(labels, profile="step", rho=2, mu=0.5, n_max=100, random_state=0)


def test_subset_rejects_unknown_minority_rule():
    with pytest.raises(ValueError, match=r"minority must be one of \('random', 'lowest', 'scarcity'\), got 'first'"):
        imbalanced_subset(BALANCED, profile="step", rho=2, mu=0.5, minority="first", random_state=0)


def _ilsvrc_like_counts(seed=2012):
    """1,000 classes: most at ILSVRC-2012's 1,300 training images, 105 between 732 and 1,299."""
    rng = np.random.default_rng(seed)
    sizes = np.full(1000, 1300)
    scarce = rng.choice(1000, 105, replace=False)
    sizes[scarce] = rng.integers(732, 1300, 105)
    sizes[scarce[0]] = 732
    return sizes


ILSVRC = _ilsvrc_like_counts()
BELOW_1000 = set(np.flatnonzero(ILSVRC < 1000).tolist())


@pytest.mark.parametrize("mu, rho, n_minority, per_minority", [(0.1, 10, 100, 100), (0.8, 50, 800, 20),
                                                                (0.9, 100, 900, 10)])
def test_imagenet_subsets_cut_majority_classes_to_1000_and_keep_scarce_classes_minority(mu, rho, n_minority,
                                                                                        per_minority):
    # the paper's ImageNet subsets: n_max 1,000; classes with fewer than 1,000 images always minority
    assert ILSVRC.min() == 732 and ILSVRC.max() == 1300 and 0 < len(BELOW_1000) < 100
    s = subset_counts(ILSVRC, profile="step", mu=mu, rho=rho, n_max=1000, minority="scarcity", random_state=0)
    assert sorted(s.counts.tolist()) == [per_minority] * n_minority + [1000] * (1000 - n_minority)
    assert len(s.minority_classes) == n_minority and BELOW_1000 <= set(s.minority_classes)
    assert s.counts.sum() == n_minority * per_minority + (1000 - n_minority) * 1000


def test_imagenet_mu_0_1_minority_beyond_the_scarce_classes_is_drawn_anew_each_repeat():
    a, b = (set(subset_counts(ILSVRC, profile="step", mu=0.1, rho=10, n_max=1000, minority="scarcity",
                              random_state=r).minority_classes) for r in (0, 1))
    assert BELOW_1000 <= a & b and a != b


def test_imagenet_subset_of_labels_has_the_planned_counts_drawn_from_each_class():
    labels = np.repeat(np.arange(1000), ILSVRC)                       # 1.2M labels, as from a folder
    s = imbalanced_subset(labels, profile="step", mu=0.9, rho=100, n_max=1000, minority="scarcity",
                          random_state=3)
    planned = subset_counts(ILSVRC, profile="step", mu=0.9, rho=100, n_max=1000, minority="scarcity",
                            random_state=3)
    assert np.array_equal(s.counts, planned.counts) and s.minority_classes == planned.minority_classes
    assert len(s.indices) == 900 * 10 + 100 * 1000 == len(np.unique(s.indices))
    assert np.bincount(labels[s.indices], minlength=1000).tolist() == planned.counts.tolist()


def test_subset_counts_reject_a_count_table_that_is_not_one_dimensional_counts():
    with pytest.raises(ValueError, match="available must be a 1-d array of >= 2 non-negative per-class counts"):
        subset_counts(np.array([[5, 5]]), profile="step", mu=0.5, rho=2)
    with pytest.raises(ValueError, match="available must be a 1-d array"):
        subset_counts(np.array([5.0, 5.0]), profile="step", mu=0.5, rho=2)


def test_scarcity_with_more_scarce_classes_than_minority_ranks_keeps_what_the_extra_ones_have():
    # 3 classes below n_max=100 but mu=0.2 gives 2 minority ranks: the smallest two get n_max/rho,
    # the third (80) cannot reach the majority's 100, keeps its 80 and is counted as minority
    available = np.array([100, 60, 100, 80, 100, 70, 100, 100, 100, 100])
    s = subset_counts(available, profile="step", mu=0.2, rho=10, n_max=100, minority="scarcity", random_state=0)
    assert s.counts.tolist() == [100, 10, 100, 80, 100, 10, 100, 100, 100, 100]
    assert s.minority_classes == (1, 3, 5) and s.class_order[:3].tolist() == [1, 5, 3]


def test_natural_profile_keeps_every_example_and_its_ratio():
    from imbalance.data.profiles import natural_rho
    labels = np.repeat([0, 1, 2], [300, 120, 15])
    subset = imbalanced_subset(labels, profile="natural", random_state=0)
    assert subset.counts.tolist() == [300, 120, 15] and len(subset.indices) == 435
    assert subset.minority_classes == (1, 2) and subset.class_order.tolist() == [2, 1, 0]
    assert natural_rho(subset.counts) == 20.0


def test_natural_profile_refuses_rho_with_the_reason():
    with pytest.raises(ValueError, match="rho must be None for the 'natural' profile .*own class counts"):
        imbalanced_subset(np.repeat([0, 1], [5, 3]), profile="natural", rho=10, random_state=0)


def test_validation_split_is_stratified_seeded_and_keeps_every_class_in_training():
    from imbalance.data.profiles import validation_split
    labels = np.repeat([0, 1, 2], [300, 120, 15])
    split = validation_split(labels, fraction=0.1, random_state=7)
    assert np.bincount(labels[split.validation]).tolist() == [30, 12, 2]          # round half up, >= 1
    assert np.bincount(labels[split.train]).tolist() == [270, 108, 13]
    assert np.intersect1d(split.train, split.validation).size == 0 and len(split.train) + len(split.validation) == 435
    again = validation_split(labels, fraction=0.1, random_state=7)
    assert np.array_equal(split.validation, again.validation)
    assert not np.array_equal(split.validation, validation_split(labels, fraction=0.1, random_state=8).validation)


def test_validation_split_that_would_empty_a_class_names_it():
    from imbalance.data.profiles import validation_split
    with pytest.raises(ValueError, match="class 1 has 1 training example"):
        validation_split(np.repeat([0, 1], [10, 1]), fraction=0.1, random_state=0)


def test_train_prior_test_subset_follows_the_training_prior():
    from imbalance.data.profiles import prior_test_subset
    labels = np.repeat([0, 1, 2], 100)
    where = prior_test_subset(labels, priors=np.array([300, 120, 15]) / 435, random_state=0)
    assert np.bincount(labels[where]).tolist() == [100, 40, 5]      # the largest class keeps all its examples
