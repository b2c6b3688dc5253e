"""Over/undersampling (full and graded) and class priors, hand-worked on a 6/2/1 example."""
import numpy as np
import pytest
from imbalance.sampling import class_aware_indices, class_priors, oversample_indices, sqrt_indices, undersample_indices
from scipy.stats import binom

Y = np.array([0] * 6 + [1] * 2 + [2] * 1)   # positions 0-5 class 0, 6-7 class 1, 8 class 2


def test_oversampling_keeps_every_example_and_fills_minorities_to_the_largest_class():
    idx = oversample_indices(Y, random_state=0)
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8]
    assert np.bincount(Y[idx]).tolist() == [6, 6, 6]


def test_undersampling_cuts_every_class_to_the_smallest_without_replacement():
    idx = undersample_indices(Y, random_state=0)
    assert idx.tolist() == [5, 7, 8]
    big = np.repeat(np.arange(3), [50, 20, 10])
    idx = undersample_indices(big, random_state=3)
    assert np.bincount(big[idx]).tolist() == [10, 10, 10] and len(np.unique(idx)) == 30


def test_graded_sampling_reduces_the_ratio_to_the_target():
    # target_rho=2: oversampling raises classes below round(6 / 2) = 3; undersampling cuts above 1 * 2 = 2
    assert oversample_indices(Y, target_rho=2, random_state=0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8, 8]
    assert undersample_indices(Y, target_rho=2, random_state=0).tolist() == [3, 4, 6, 7, 8]
    y = np.repeat(np.arange(4), [1000, 1000, 10, 1])   # rho = 1000
    for rho in [1, 10, 100, 1000]:
        over = np.bincount(y[oversample_indices(y, target_rho=rho, random_state=0)])
        under = np.bincount(y[undersample_indices(y, target_rho=rho, random_state=0)])
        assert over.max() / over.min() == pytest.approx(rho, rel=0.01)
        assert under.max() / under.min() == pytest.approx(rho)


def test_sampling_is_deterministic_per_seed():
    y = np.repeat(np.arange(3), [50, 5, 2])
    assert np.array_equal(oversample_indices(y, random_state=7), oversample_indices(y, random_state=7))
    assert not np.array_equal(oversample_indices(y, random_state=7), oversample_indices(y, random_state=8))


def test_class_aware_and_sqrt_draw_exact_positions_for_a_fixed_seed():
    # class-aware, seed 0: one cycle of the classes (2, 0, 1), 4 examples per class draw, each from its class's
    # own reshuffled cycle: class 2's one example 4 times, 4 of class 0's 6, class 1's two examples twice
    assert class_aware_indices(Y, size=12, random_state=0).tolist() == [8, 8, 8, 8, 5, 3, 2, 4, 7, 6, 7, 6]
    # sqrt: i.i.d., classes [1, 0, 0, 0, 2, 2, 1, 1, 1, 2, 2, 0]; position = the class's drawn example
    assert sqrt_indices(Y, size=12, random_state=0).tolist() == [6, 5, 3, 0, 8, 8, 7, 7, 7, 8, 8, 1]
    assert class_aware_indices(Y, size=12, random_state=0).dtype == np.int64
    assert not np.array_equal(sqrt_indices(Y, size=50, random_state=1), sqrt_indices(Y, size=50, random_state=2))


def _within_binomial_bounds(observed, probabilities, n):
    low, high = binom.interval(1 - 1e-6, n, np.asarray(probabilities))
    return bool(((observed >= low) & (observed <= high)).all())


@pytest.mark.parametrize("samples_per_class", [1, 4])
def test_class_aware_draws_cycle_through_reshuffled_classes_and_examples_as_kang_et_al(samples_per_class):
    # Kang et al.'s ClassAwareSampler: each pass over the classes is a permutation of them, each class draw
    # takes `samples_per_class` consecutive examples, and a class's examples come in permutations of themselves
    y = np.random.default_rng(5).permutation(np.repeat([3, 5, 9], [60, 15, 4]))
    k, n_draws = samples_per_class, 3 * 40
    idx = class_aware_indices(y, size=n_draws * k, samples_per_class=k, random_state=2)
    drawn = y[idx].reshape(n_draws, k)
    assert (drawn == drawn[:, :1]).all()                                  # one class per draw
    for cycle in drawn[:, 0].reshape(-1, 3):
        assert sorted(cycle.tolist()) == [3, 5, 9]                        # every pass: each class once
    for c, n_c in ((3, 60), (5, 15), (9, 4)):
        mine = idx[y[idx] == c]
        assert mine.size == 40 * k                                        # equal draws per class
        for start in range(0, mine.size - n_c + 1, n_c):                  # each full pass: every example once
            assert sorted(mine[start:start + n_c].tolist()) == sorted(np.flatnonzero(y == c).tolist())
    # the same seed, the same stream; another seed, another
    assert np.array_equal(idx, class_aware_indices(y, size=n_draws * k, samples_per_class=k, random_state=2))
    assert not np.array_equal(idx, class_aware_indices(y, size=n_draws * k, samples_per_class=k, random_state=3))


@pytest.mark.parametrize("draw, class_weights", [(class_aware_indices, np.ones_like), (sqrt_indices, np.sqrt)])
def test_class_balanced_draws_follow_their_class_and_example_probabilities(draw, class_weights):
    # labels shuffled and non-contiguous (classes 3, 5, 9 present; 0-2 absent): 60 / 15 / 4 examples
    y = np.random.default_rng(5).permutation(np.repeat([3, 5, 9], [60, 15, 4]))
    n = 40_000
    idx = draw(y, size=n, random_state=11)
    assert idx.shape == (n,) and idx.min() >= 0 and idx.max() < y.size
    counts = np.array([60, 15, 4])
    p_class = class_weights(counts.astype(float)) / class_weights(counts.astype(float)).sum()
    per_class = np.array([(y[idx] == c).sum() for c in (3, 5, 9)])
    assert _within_binomial_bounds(per_class, p_class, n)
    # within a class every example is equally likely: position j is drawn with p_class / n_c
    per_position = np.bincount(idx, minlength=y.size)
    p_position = (p_class / counts)[np.searchsorted([3, 5, 9], y)]
    assert _within_binomial_bounds(per_position, p_position, n)


def test_class_priors_are_frequencies_before_resampling():
    assert class_priors(Y, n_classes=4).tolist() == [6 / 9, 2 / 9, 1 / 9, 0.0]


@pytest.mark.parametrize("call, message", [
    (lambda: oversample_indices(Y, target_rho=0.5), "target_rho must be a number >= 1"),
    (lambda: undersample_indices(Y, target_rho=float("nan")), "target_rho must be a number >= 1"),
    (lambda: oversample_indices(np.array([])), "y must be a non-empty 1-d array"),
    (lambda: class_priors(Y, n_classes=2), r"y holds labels outside \[0, 1\]"),
    (lambda: class_aware_indices(Y, size=0), "size must be a positive integer"),
    (lambda: class_aware_indices(Y, size=4, samples_per_class=0), "samples_per_class must be a positive integer"),
    (lambda: sqrt_indices(Y, size=2.5), "size must be a positive integer"),
    (lambda: sqrt_indices(np.zeros((2, 2)), size=3), "y must be a non-empty 1-d array"),
])
def test_sampling_rejects_bad_input_naming_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()
