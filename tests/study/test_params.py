"""Params files: validation messages, overrides, grid expansion and the paper-scale files."""
import json
from pathlib import Path

import pytest
import yaml
from imbalance.study.params import METHODS, GridPoint, check_data, expand_grid, load_params, params_from_dict

PARAMS = Path(__file__).resolve().parents[2] / "params"

BASE = {"study": "t", "dataset": "mnist-sample", "notebook": "mnist/step", "imbalance": "step",
        "rho": [10, 100], "mu": [0.5], "repeats": 2, "recipe": "lenet5-mnist"}


def write(tmp_path, **changes) -> Path:
    raw = {**BASE, **changes}
    raw = {k: v for k, v in raw.items() if v != "<drop>"}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def error(tmp_path, overrides=(), **changes) -> str:
    path = write(tmp_path, **changes)
    with pytest.raises(ValueError) as info:
        load_params(path, overrides)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


# --- the shipped files ------------------------------------------------------------------------

def test_every_shipped_params_file_is_valid():
    files = sorted(PARAMS.rglob("*.yaml"))
    assert {f.relative_to(PARAMS).as_posix() for f in files} >= {
        "quick.yaml", "mnist/step.yaml", "mnist/linear.yaml", "mnist/graded.yaml",
        "cifar10/step.yaml", "cifar10/linear.yaml", "imagenet/subsets.yaml"}
    for f in files:
        assert expand_grid(load_params(f))


def test_no_two_shipped_params_files_share_a_study_name():
    """A study's outputs are outputs/<study>/: two files with one name would share (and be refused by) one
    database, as params/mnist/step.yaml once was by the committed params/real/mnist-step.yaml (issue 26)."""
    files = sorted(PARAMS.rglob("*.yaml")) + sorted((PARAMS.parent / "examples").glob("*.yaml"))
    names = {}
    for f in files:
        names.setdefault(load_params(f).study, []).append(f.relative_to(PARAMS.parent).as_posix())
    assert {n: fs for n, fs in names.items() if len(fs) > 1} == {}
    assert names["mnist-step-paper"] == ["params/mnist/step.yaml"] and names["mnist-step"] == ["params/real/mnist-step.yaml"]


def test_paper_mnist_step_expands_to_81_points_and_81_x_methods_x_50_records():
    params = load_params(PARAMS / "mnist/step.yaml")
    points = expand_grid(params)
    assert len(points) == 81
    assert len({p.point_id for p in points}) == 81
    assert params.repeats == 50 and params.n_max == 5000 and params.recipe_overrides == {}
    assert len(points) * params.records_per_point == 81 * len(METHODS) * 50
    assert params.trained_per_point == 5 * 50  # the three -thresh methods reuse a network


def test_paper_files_match_the_paper_grids():
    linear = expand_grid(load_params(PARAMS / "mnist/linear.yaml"))
    assert [p.point_id for p in linear][:2] == ["linear_rho=10", "linear_rho=25"] and len(linear) == 9
    cifar = load_params(PARAMS / "cifar10/step.yaml")
    assert (cifar.rho, cifar.mu, cifar.minority) == ((2, 10, 20, 50), (0.2, 0.5, 0.8), "lowest")
    assert len(expand_grid(cifar)) == 12
    assert len(expand_grid(load_params(PARAMS / "cifar10/linear.yaml"))) == 4
    imagenet = expand_grid(load_params(PARAMS / "imagenet/subsets.yaml"))
    assert [p.point_id for p in imagenet] == ["step_rho=10_mu=0.1", "step_rho=50_mu=0.8",
                                              "step_rho=100_mu=0.9"]
    graded = load_params(PARAMS / "mnist/graded.yaml")
    points = expand_grid(graded)
    assert len(points) == len(graded.mu) * len(graded.levels)
    assert all(p.level <= p.rho == 1000 for p in points)


def test_quick_study_stays_small():
    params = load_params(PARAMS / "quick.yaml")
    # `make study` must finish in under 10 minutes on 2 cores: about 56 s per point measured here, and
    # 3 repeats are the fewest that give an interval and a paired test (imbalance.analysis.stats)
    assert len(expand_grid(params)) <= 6 and params.repeats == 3
    assert params.recipe_overrides["iterations"] <= 300


# --- grid points ------------------------------------------------------------------------------

def test_point_ids_are_readable_and_stable():
    assert GridPoint("mnist", "step", 10, 0.5).point_id == "step_rho=10_mu=0.5"
    assert GridPoint("mnist", "step", 10.0, 0.5).point_id == "step_rho=10_mu=0.5"
    assert GridPoint("mnist", "linear", 10).point_id == "linear_rho=10"
    assert GridPoint("mnist", "step", 1000, 0.5, 10).point_id == "step_rho=1000_mu=0.5_level=10"
    assert GridPoint("mnist", "exponential", 2.5).point_id == "exponential_rho=2.5"


def test_grid_is_rho_by_mu_by_level_and_drops_levels_above_rho(tmp_path):
    params = load_params(write(tmp_path, rho=[10, 100], mu=[0.2, 0.5], levels=[1, 50]))
    assert [p.point_id for p in expand_grid(params)] == [
        "step_rho=10_mu=0.2_level=1", "step_rho=10_mu=0.5_level=1",
        "step_rho=100_mu=0.2_level=1", "step_rho=100_mu=0.2_level=50",
        "step_rho=100_mu=0.5_level=1", "step_rho=100_mu=0.5_level=50"]


def test_explicit_points_replace_the_product(tmp_path):
    params = load_params(write(tmp_path, rho="<drop>", mu="<drop>",
                               points=[{"rho": 10, "mu": 0.1}, {"rho": 50, "mu": 0.8}]))
    assert [p.point_id for p in expand_grid(params)] == ["step_rho=10_mu=0.1", "step_rho=50_mu=0.8"]


def test_notebook_parameters_are_plain_json_with_the_point_and_study_keys(tmp_path):
    params = load_params(write(tmp_path, notebook_parameters={"sleep_s": 1}))
    point = expand_grid(params)[0]
    parameters = point.parameters(params)
    assert json.loads(json.dumps(parameters)) == parameters
    assert parameters["point_id"] == point.point_id == "step_rho=10_mu=0.5"
    assert parameters["rho"] == 10 and isinstance(parameters["rho"], int)
    assert parameters["methods"] == list(METHODS) and parameters["repeats"] == 2
    assert parameters["sleep_s"] == 1
    for key in ("study", "dataset", "data_root", "imbalance", "mu", "level", "n_max", "minority",
                "seed", "recipe", "recipe_overrides", "device", "batched"):
        assert key in parameters


# --- overrides --------------------------------------------------------------------------------

def test_overrides_replace_values_and_reach_into_recipe_overrides(tmp_path):
    path = write(tmp_path, recipe_overrides={"iterations": 300, "eval_interval": 100})
    params = load_params(path, ["rho=[10,50]", "repeats=3", "recipe_overrides.iterations=50",
                                "notebook_parameters.sleep_s=0.5", "device=cpu"])
    assert params.rho == (10, 50) and params.repeats == 3 and params.device == "cpu"
    assert params.recipe_overrides == {"iterations": 50, "eval_interval": 100}
    assert params.notebook_parameters == {"sleep_s": 0.5}


@pytest.mark.parametrize("override, expected", [
    ("repeats", "expected key=value"),
    ("=3", "expected key=value"),
    ("repeats=[1,", "not valid YAML"),
    ("rhoo=5", "unknown key 'rhoo' (in override 'rhoo=5'); did you mean 'rho'?"),
    ("rho.x=1", "dotted keys reach into recipe_overrides, notebook_parameters only"),
    ("repeats=0", "(set by override 'repeats=0'): key 'repeats': value 0"),
])
def test_bad_overrides_are_named(tmp_path, override, expected):
    assert expected in error(tmp_path, [override])


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    ({"rhoo": 10}, "unknown key 'rhoo'; did you mean 'rho'?"),
    ({"methdos": ["ros"]}, "did you mean 'methods'?"),
    ({"repeats": "two"}, "key 'repeats': value 'two' is not valid; expected an integer >= 1"),
    ({"repeats": True}, "key 'repeats': value True is not valid; expected an integer >= 1"),
    ({"repeats": 0}, "key 'repeats': value 0 is not valid; expected an integer >= 1"),
    ({"seed": -1}, "key 'seed': value -1"),
    ({"n_max": 0}, "key 'n_max': value 0"),
    ({"batched": "yes"}, "key 'batched': value 'yes' is not valid; expected true or false"),
    ({"cell_timeout": 0}, "key 'cell_timeout': value 0 is not valid; expected a number of seconds > 0, or null"),
    ({"cell_timeout": "1h"}, "key 'cell_timeout': value '1h' is not valid; expected a number of seconds > 0"),
    ({"rho": [10, 0.5]}, "key 'rho': value [10, 0.5] is not valid; expected a number or a non-empty list of numbers >= 1"),
    ({"rho": "ten"}, "key 'rho': value 'ten'"),
    ({"rho": [10, 10]}, "key 'rho': value [10, 10] is not valid; expected each value once"),
    ({"mu": [0]}, "key 'mu': value [0] is not valid; expected a number or a non-empty list of numbers in the open interval (0, 1)"),
    ({"mu": 1.2}, "key 'mu': value 1.2"),
    ({"mu": 0.01}, "key 'mu': value 0.01 is not valid; expected mu giving 1..9 minority classes"),
    ({"mu": "<drop>"}, "key 'mu': value None is not valid; expected a number or list of numbers in (0, 1): the step imbalance needs mu"),
    ({"imbalance": "linear"}, "key 'mu': value [0.5] is not valid; expected null: mu applies to the step imbalance only, not 'linear'"),
    ({"imbalance": "stepp"}, "key 'imbalance': value 'stepp' is not valid; expected one of step, linear, exponential, natural (did you mean 'step'?)"),
    ({"dataset": "mnist2"}, "key 'dataset': value 'mnist2' is not valid; expected one of mnist-sample, mnist,"),
    ({"recipe": "lenet"}, "key 'recipe': value 'lenet' is not valid; expected one of lenet5-mnist"),
    ({"methods": ["baseline", "ross"]}, "key 'methods': value ['baseline', 'ross'] is not valid; expected names from baseline"),
    ({"methods": ["ross"]}, "'ross' is unknown (did you mean 'ros'?)"),
    ({"methods": []}, "key 'methods': value [] is not valid"),
    ({"minority": "smallest"}, "key 'minority': value 'smallest' is not valid; expected one of random, lowest, scarcity"),
    ({"device": "gpu"}, "key 'device': value 'gpu' is not valid; expected auto, cpu, cuda or cuda:N"),
    ({"study": "my study"}, "key 'study': value 'my study' is not valid"),
    ({"notebook": "mnist/step.ipynb"}, "key 'notebook': value 'mnist/step.ipynb' is not valid"),
    ({"levels": [0.5]}, "key 'levels': value [0.5] is not valid; expected a number or a non-empty list of numbers >= 1"),
    ({"levels": [500]}, "key 'levels': value [500] is not valid; expected target ratios <= the largest rho (100)"),
    ({"recipe_overrides": [1]}, "key 'recipe_overrides': value [1] is not valid; expected a mapping"),
    ({"points": [{"rho": 10, "mu": 0.5}]}, "key 'points'"),
    ({"rho": "<drop>", "mu": "<drop>", "points": [{"rho": 0.5, "mu": 0.5}]}, "with rho >= 1 and <= 1e+12; {'rho': 0.5, 'mu': 0.5} is not one"),
    ({"rho": "<drop>", "mu": "<drop>", "points": [{"rho": 10}]}, "with mu in (0, 1); {'rho': 10} is not one"),
    ({"rho": "<drop>", "mu": "<drop>", "points": [{"rho": 10, "nu": 0.5}]}, "{'rho': 10, 'nu': 0.5} is not one"),
    ({"rho": "<drop>"}, "missing required key 'rho' (or an explicit 'points' list)"),
    ({"recipe": "<drop>"}, "missing required key(s) recipe"),
])
def test_bad_values_name_file_key_value_and_expectation(tmp_path, changes, expected):
    assert expected in error(tmp_path, **changes)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping of keys"):
        load_params(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml not found"):
        load_params(tmp_path / "nope.yaml")


def test_null_means_default():
    params = params_from_dict({**BASE, "methods": None, "minority": None, "seed": None})
    assert params.methods == METHODS and params.minority == "random" and params.seed == 0


# --- data presence ----------------------------------------------------------------------------

def test_mnist_sample_needs_no_data_files(tmp_path):
    check_data(load_params(write(tmp_path, data_root=str(tmp_path / "empty"))))


def test_missing_mnist_files_are_reported_before_training(tmp_path):
    params = load_params(write(tmp_path, dataset="mnist", data_root=str(tmp_path / "empty")))
    with pytest.raises(FileNotFoundError, match="empty"):
        check_data(params)


def test_params_take_their_names_from_the_vocabulary_and_the_catalog_names_every_recipe():
    from imbalance import catalog, registry
    from imbalance.study import params
    from imbalance.training import fast, recipes
    assert METHODS is registry.PAPER_METHODS and all(registry.is_method(m) for m in METHODS)
    assert params.RECIPES is catalog.RECIPE_NAMES and params.DATASETS is catalog.STUDY_DATASETS
    assert params.TEST_PRIORS is catalog.TEST_PRIORS and params.SELECTIONS is catalog.SELECTIONS
    assert params.IMAGE_FITS is catalog.IMAGE_FITS
    # the recipes are defined (with torch) in training; the catalog is the one torch-free list of their names
    assert catalog.PAPER_RECIPES == tuple(recipes.RECIPES) and catalog.FAST_RECIPES == tuple(fast.FAST_RECIPES)


def test_a_fast_recipe_takes_every_registered_method_and_its_post_hoc_variants(tmp_path):
    from imbalance.registry import METHODS as REGISTERED
    names = [*REGISTERED, "ldam-drw-la", "cb-focal-thresh", "crt-tau-norm"]
    params = load_params(write(tmp_path, recipe="fast-cifar10-cpu", dataset="cifar10-jpg",
                               notebook="cifar10/step", methods=names))
    assert params.methods == tuple(names)


def test_a_fast_recipe_takes_the_paper_methods_and_post_hoc_suffixes(tmp_path):
    names = [*METHODS, "ros-la", "baseline-tau-norm"]
    params = load_params(write(tmp_path, recipe="fast-cifar10-cpu", dataset="cifar10-jpg",
                               notebook="cifar10/step", methods=names))
    assert params.recipe == "fast-cifar10-cpu" and params.methods == tuple(names)


# --- a params file is data (issue 16) ---------------------------------------------------------

@pytest.mark.parametrize("key", ["import os; os.system('touch pwned'); x", "class", "a-b", "1x", "x y", "ünï"])
def test_notebook_parameter_keys_must_be_identifiers(tmp_path, key):
    message = error(tmp_path, notebook_parameters={key: 1})
    assert "key 'notebook_parameters'" in message and f"{key!r} is not one" in message


@pytest.mark.parametrize("key", ["rho", "mu", "seed", "recipe_overrides", "point_id", "records_path", "threads", "plugins"])
def test_notebook_parameters_may_not_override_the_grid_point(tmp_path, key):
    message = error(tmp_path, notebook_parameters={key: 100})
    assert f"{key!r} is one" in message and "would override the grid point" in message


def test_notebook_parameters_override_is_checked_like_the_file(tmp_path):
    assert "'rho' is one" in error(tmp_path, ["notebook_parameters.rho=100"])


def test_notebook_parameter_values_must_be_plain_data(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(BASE) + "notebook_parameters: {when: 2020-01-01}\n")
    with pytest.raises(ValueError, match="plain values .* 'when' is datetime.date"):
        load_params(path)


@pytest.mark.parametrize("notebook", ["/etc/passwd", "../outside", "mnist/../../outside", "~/x"])
def test_notebook_must_resolve_inside_the_notebooks_folder(tmp_path, notebook):
    message = error(tmp_path, notebook=notebook)
    assert "key 'notebook'" in message and "--notebooks DIR" in message


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path):
    path = tmp_path / "study.yaml"
    text = "".join(f"{k}: {json.dumps(v)}\n" for k, v in BASE.items())    # one line per key: repeats on 7
    path.write_text(text + "seed: 1\nrepeats: 5\n")
    with pytest.raises(ValueError, match=r"duplicate key 'repeats' on lines 7 and 10; give each key once"):
        load_params(path)
    path.write_text(text + "recipe_overrides:\n  iterations: 5\n  iterations: 6\n")
    with pytest.raises(ValueError, match=r"duplicate key 'iterations' on lines 10 and 11"):
        load_params(path)


def test_yaml_anchors_and_aliases_are_refused(tmp_path):
    laughs = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(BASE) + "notebook_parameters:\n  l0: &l0 [lol]\n"
                    + "".join("  " + line for line in laughs.splitlines(True)))
    with pytest.raises(ValueError, match="line 13: anchors and aliases .* are not allowed"):
        load_params(path)


def test_an_oversized_params_file_or_override_is_refused(tmp_path):
    from imbalance.study.params import MAX_DOCUMENT_BYTES
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(BASE) + "# padding\n" * (MAX_DOCUMENT_BYTES // 10))
    with pytest.raises(ValueError, match="expected a params file of at most 1,048,576 bytes"):
        load_params(path)
    huge = "rho=[" + ",".join(["1000"] * (MAX_DOCUMENT_BYTES // 4)) + "]"
    message = error(tmp_path, [huge])
    assert "override 'rho': 1,310,721 bytes; expected at most 1,048,576" in message and len(message) < 400


@pytest.mark.parametrize("changes, expected", [
    ({"repeats": 10**9}, "key 'repeats': value 1000000000 is not valid; expected an integer >= 1 and <= 100,000"),
    ({"seed": 10**23}, "key 'seed': value 100000000000000000000000 is not valid; expected an integer >= 0 and <= 9,223"),
    ({"seed": 2**63}, "key 'seed'"),
    ({"rho": [10**400]}, "key 'rho'"),
    ({"rho": [1e13]}, "numbers >= 1 and <= 1e+12"),
    ({"study": "s" * 300}, "expected a name of at most 100 characters (it is a folder name), not 300"),
])
def test_out_of_range_values_are_one_line_errors(tmp_path, changes, expected):
    message = error(tmp_path, **changes)
    assert expected in message and "\n" not in message


# --- natural imbalance (your own skewed data) ---------------------------------------------------

def test_natural_imbalance_is_one_grid_point_or_one_per_level(tmp_path):
    natural = dict(imbalance="natural", rho="<drop>", mu="<drop>")
    points = expand_grid(load_params(write(tmp_path, **natural)))
    assert [p.point_id for p in points] == ["natural"] and points[0].rho is None and points[0].mu is None
    graded = expand_grid(load_params(write(tmp_path, **natural, levels=[1, 5])))
    assert [p.point_id for p in graded] == ["natural_level=1", "natural_level=5"]
    assert graded[0].parameters(load_params(write(tmp_path, **natural, levels=[1, 5])))["rho"] is None


@pytest.mark.parametrize("key, value", [("rho", [10]), ("mu", [0.5]), ("n_max", 100)])
def test_rho_mu_or_n_max_with_natural_imbalance_is_an_error_saying_why(tmp_path, key, value):
    changes = dict(imbalance="natural", rho="<drop>", mu="<drop>")
    message = error(tmp_path, **{**changes, key: value})
    assert f"key {key!r}" in message and "keeps the data's own class counts" in message


def test_validation_and_test_prior_reach_the_notebook_and_bad_values_are_named(tmp_path):
    params = load_params(write(tmp_path, validation=0.1, test_prior="both"))
    parameters = expand_grid(params)[0].parameters(params)
    assert parameters["validation"] == 0.1 and parameters["test_prior"] == "both"
    assert load_params(write(tmp_path)).test_prior == "balanced" and load_params(write(tmp_path)).validation is None
    assert "key 'validation'" in error(tmp_path, validation=1.5) and "(0, 1)" in error(tmp_path, validation=1.5)
    assert "key 'test_prior'" in error(tmp_path, test_prior="skewed")


def test_a_short_params_file_defaults_its_notebook_from_dataset_and_imbalance(tmp_path):
    assert load_params(write(tmp_path, notebook="<drop>")).notebook == "mnist/step"
    assert load_params(write(tmp_path, notebook="<drop>", levels=[1, 10])).notebook == "mnist/graded"
    own = dict(notebook="<drop>", dataset="npz", imbalance="natural", rho="<drop>", mu="<drop>")
    assert load_params(write(tmp_path, **own)).notebook == "own/study"
    assert load_params(write(tmp_path, **{**own, "notebook": "mnist/step"})).notebook == "mnist/step"   # given: kept
    assert (PARAMS.parent / "notebooks" / "own" / "study.ipynb").is_file()


def test_image_size_is_for_image_folders_and_a_side_of_8_or_more(tmp_path):
    folder = dict(dataset="imagefolder", imbalance="natural", rho="<drop>", mu="<drop>")
    params = load_params(write(tmp_path, **folder, image_size=64, image_fit="stretch"))
    assert expand_grid(params)[0].parameters(params)["image_size"] == 64
    assert "applies to dataset imagefolder only" in error(tmp_path, image_size=64)
    assert "an integer >= 8" in error(tmp_path, **folder, image_size=4)
    assert "one of crop, stretch" in error(tmp_path, **folder, image_fit="pad")


# --- per-point repeats (issue 13: the paper's ImageNet protocol) --------------------------------------

def test_points_may_set_their_own_repeats_and_the_grid_carries_them(tmp_path):
    params = load_params(write(tmp_path, rho="<drop>", mu="<drop>", repeats=1,
                               points=[{"rho": 10, "mu": 0.1}, {"rho": 100, "mu": 0.9, "repeats": 3}]))
    grid = expand_grid(params)
    assert [(p.point_id, p.repeats) for p in grid] == [("step_rho=10_mu=0.1", 1), ("step_rho=100_mu=0.9", 3)]
    assert [p.parameters(params)["repeats"] for p in grid] == [1, 3]
    assert params.most_repeats == 3 and params.repeats == 1
    assert params.to_dict()["points"] == [{"rho": 10, "mu": 0.1}, {"rho": 100, "mu": 0.9, "repeats": 3}]
    assert load_params(write(tmp_path, rho="<drop>", mu="<drop>", repeats=1, points=params.to_dict()["points"])) \
        .points == params.points


def test_a_grid_without_per_point_repeats_gives_every_point_the_studys():
    params = load_params(PARAMS / "mnist" / "step.yaml")
    assert {p.repeats for p in expand_grid(params)} == {params.repeats}


@pytest.mark.parametrize("repeats", [0, 2.5, True, "3"])
def test_a_bad_per_point_repeats_is_refused_naming_points(tmp_path, repeats):
    message = error(tmp_path, rho="<drop>", mu="<drop>", points=[{"rho": 10, "mu": 0.5, "repeats": repeats}])
    assert "key 'points'" in message and "repeats an integer >= 1" in message


def test_the_imagenet_file_has_the_papers_three_repeats_at_mu_0_9_rho_100_only():
    params = load_params(PARAMS / "imagenet" / "subsets.yaml")
    assert {p.point_id: p.repeats for p in expand_grid(params)} == {
        "step_rho=10_mu=0.1": 1, "step_rho=50_mu=0.8": 1, "step_rho=100_mu=0.9": 3}


# --- learning-rate selection (issue 13: the paper's protocol and an honest one) -------------------------

def test_the_paper_cifar_files_select_on_the_test_set_and_other_studies_on_the_training_loss():
    for name in ("step", "linear"):
        assert load_params(PARAMS / "cifar10" / f"{name}.yaml").selection == "test-best-of-8"
    assert load_params(PARAMS / "mnist" / "step.yaml").selection == "train-loss"


def test_validation_best_of_8_needs_a_validation_split(tmp_path):
    message = error(tmp_path, selection="validation-best-of-8")
    assert "key 'validation'" in message and "selection validation-best-of-8" in message
    assert load_params(write(tmp_path, selection="validation-best-of-8", validation=0.1)).validation == 0.1


def test_a_best_of_selection_with_a_recipe_without_lr_search_is_refused_before_running(tmp_path):
    from imbalance.study.params import check_recipe
    params = load_params(write(tmp_path, selection="test-best-of-8"))        # lenet5-mnist: no lr search
    with pytest.raises(ValueError, match="key 'selection': value 'test-best-of-8' is not valid for recipe "
                                         "'lenet5-mnist', which has no lr search"):
        check_recipe(params)
    check_recipe(load_params(write(tmp_path, selection="test-best-of-8",
                                   recipe_overrides={"lr_search": [0.01, 0.001]})))


def test_the_dry_run_shows_subsets_the_selection_cost_and_a_fast_recipes_gpu_projection(tmp_path, monkeypatch):
    from imbalance.study import runner
    monkeypatch.setattr(runner, "_estimate", lambda *a, **k: runner.Estimate("(not timed in this test)"))
    cifar = load_params(PARAMS / "cifar10" / "step.yaml")
    text = runner.plan(cifar, expand_grid(cifar), study_dir=tmp_path, workers=1)
    assert "step_rho=10_mu=0.5  subset: 5 classes x 500, 5 classes x 5,000 (27,500 images)" in text
    assert "each method and repeat trains 8 candidates" in text and "the paper's protocol, optimistic" in text
    assert "600 x 8 = 4800 networks, 8x the cost" in text                  # 12 points x 5 trained x 10 repeats
    fast = load_params(PARAMS / "cifar10" / "fast-step.yaml")
    text = runner.plan(fast, expand_grid(fast), study_dir=tmp_path, workers=1)
    assert "GPU projection: 300 networks x 0.726 PFLOP = 217.8 PFLOP, at least 38.6 min (0.64 GPU-hours)" in text and "candidates" not in text
    imagenet = load_params(PARAMS / "imagenet" / "subsets.yaml")
    text = runner.plan(imagenet, expand_grid(imagenet), study_dir=tmp_path, workers=1)
    assert "step_rho=100_mu=0.9  (3 repeats)  subset: minority classes x 10, majority classes x 1,000" in text
    assert "trained networks: 3 trained methods x 5 repeats over the 3 points = 15" in text


def test_the_dry_run_counts_an_image_folders_classes_for_the_imagenet_subsets(tmp_path, monkeypatch):
    """A generated ILSVRC-like folder: 10 classes, 3 scarce (fewer than n_max files); with the paper's
    scarcity rule the scarce classes are minority, and the line gives the exact per-class counts."""
    from imbalance.study import runner
    monkeypatch.setattr(runner, "_estimate", lambda *a, **k: runner.Estimate("(not timed in this test)"))
    sizes = [12, 12, 12, 12, 12, 12, 12, 7, 8, 9]
    for c, n in enumerate(sizes):
        folder = tmp_path / "data" / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i}.JPEG").write_bytes(b"")
    params = params_from_dict({"study": "in", "dataset": "imagefolder", "data_root": str(tmp_path / "data"),
                               "notebook": "imagenet/subsets", "imbalance": "step", "n_max": 10,
                               "minority": "scarcity", "points": [{"rho": 10, "mu": 0.5, "repeats": 3}],
                               "recipe": "resnet10-imagenet"})
    text = runner.plan(params, expand_grid(params), study_dir=tmp_path / "out", workers=1)
    assert "step_rho=10_mu=0.5  (3 repeats)  subset: 5 classes x 1, 5 classes x 10 (55 images, as counted in " \
           "the folder)" in text


def test_the_cifar10_successor_study_names_every_registered_method_on_the_fast_recipe_without_smoothing():
    from imbalance.registry import METHODS as REGISTERED
    params = load_params(PARAMS / "real" / "cifar10-v2.yaml")
    assert set(REGISTERED) <= set(params.methods) and params.recipe == "fast-cifar10-cpu"
    assert params.recipe_overrides["label_smoothing"] == 0.0
