"""The method registry: one source of names, derived post-hoc suffixes, users' methods and plugins."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from imbalance import registry
from imbalance.study.params import load_params

ROOT = Path(__file__).resolve().parents[1]
ISSUE_LIST = ["baseline", "ros", "weighted-ce", "cb-ce", "cb-focal", "focal", "la-loss", "balanced-softmax",
              "ldam-drw", "class-aware", "sqrt-sampling", "crt", "drw", "baseline-la", "baseline-tau-norm"]


@pytest.fixture
def clean_registry():
    before = dict(registry.METHODS)
    yield
    registry.METHODS.clear()
    registry.METHODS.update(before)


def test_suffixes_derive_post_hoc_methods_of_any_trained_method():
    m = registry.get_method("ldam-drw-tau-norm")
    assert (m.posthoc, m.base, m.posthoc_tau) == ("tau-norm", "ldam-drw", 1.0)
    assert registry.get_method("crt-la").base == "crt" and registry.get_method("ros-thresh").threshold
    assert registry.trained_method("focal-thresh") == "focal" and registry.trained_method("focal") == "focal"
    with pytest.raises(ValueError, match=r"unknown method 'baseline-la-thresh'"):
        registry.get_method("baseline-la-thresh")         # a suffix applies to a trained method only


def test_unknown_name_suggests_the_nearest_and_lists_the_suffix_rule():
    with pytest.raises(ValueError, match=r"unknown method 'focall' \(did you mean 'focal'\?\); valid methods: "
                                         r"baseline, ros, .* '<m>-la', '<m>-tau-norm' for any of them"):
        registry.get_method("focall")


@pytest.mark.parametrize("a, b, distance", [
    ("rso", "ros", 1), ("rso", "rus", 2), ("ca", "abc", 3), ("basline", "baseline", 1), ("crt", "crt", 0),
    ("two-phase-rso", "two-phase-ros", 1), ("", "ros", 3), ("abcd", "badc", 2),
])
def test_edit_distance_counts_an_adjacent_transposition_as_one_edit(a, b, distance):
    # by hand: optimal string alignment ("ca" -> "abc" is 3: OSA cannot edit a transposed pair again)
    assert registry.edit_distance(a, b) == registry.edit_distance(b, a) == distance


@pytest.mark.parametrize("typo, said", [
    ("rso", "(did you mean 'ros'?)"),                  # difflib said 'rus', the opposite method
    ("rss", "(did you mean 'ros' or 'rus'?)"),         # one substitution from each: both listed
    ("two-phase-rso", "(did you mean 'two-phase-ros'?)"),
])
def test_a_misspelled_method_gets_the_names_one_edit_away_transpositions_included(tmp_path, typo, said):
    with pytest.raises(ValueError) as info:
        registry.get_method(typo)
    assert said in str(info.value)
    with pytest.raises(ValueError) as info:         # a params file's methods list says the same
        load_params(ROOT / "params/quick.yaml", [f"methods=[baseline,{typo}]"])
    assert f"{typo!r} is unknown {said}" in str(info.value)


def test_params_accept_every_method_of_the_issue_and_reject_a_typo(tmp_path):
    params = load_params(ROOT / "params/quick.yaml", ["methods=[" + ",".join(ISSUE_LIST) + "]"])
    assert params.methods == tuple(ISSUE_LIST)
    assert params.trained_methods == tuple(ISSUE_LIST[:-2])       # the '-la' / '-tau-norm' reuse the baseline
    with pytest.raises(ValueError, match=r"'cb-focl' is unknown \(did you mean 'cb-focal'\?\)"):
        load_params(ROOT / "params/quick.yaml", ["methods=[baseline,cb-focl]"])


def test_validating_method_names_imports_no_torch():
    code = ("import sys; from imbalance.study.params import load_params; "
            f"load_params({str(ROOT / 'params/quick.yaml')!r}, ['methods=[focal,crt-la,ldam-drw-tau-norm]']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "lib")})
    assert out.returncode == 0, out.stderr


def test_a_registered_method_is_valid_everywhere_and_names_are_checked(clean_registry):
    mine = registry.register_method(registry.Method(name="my-focal", loss=registry.Loss(focal_gamma=0.5)))
    assert registry.get_method("my-focal") is mine and registry.get_method("my-focal-la").base == "my-focal"
    assert "my-focal" in registry.method_names() and "my-focal" in registry.display_order()
    with pytest.raises(ValueError, match="'my-focal' is registered already; pass replace_existing=True"):
        registry.register_method(registry.Method(name="my-focal", loss=registry.Loss(focal_gamma=1.0)))
    with pytest.raises(ValueError, match="ends in a post-hoc suffix"):
        registry.register_method(registry.Method(name="mine-la"))
    with pytest.raises(ValueError, match=r"sampling must be one of .*got 'smote'"):
        registry.Method(name="x", sampling="smote")
    with pytest.raises(ValueError, match=r"Loss focal_gamma must be a number >= 0, got -1"):
        registry.Loss(focal_gamma=-1)


def test_a_params_file_cannot_name_plugins(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text((ROOT / "params/quick.yaml").read_text() + "plugins: [os]\n")
    with pytest.raises(ValueError, match=r"key 'plugins' is set on the command line only \(imbalance run --plugin"):
        load_params(path)


@pytest.mark.slow
def test_plugin_flag_registers_a_users_method_for_the_dry_run(tmp_path):
    (tmp_path / "my_methods.py").write_text(textwrap.dedent("""
        from imbalance.registry import Loss, Method, register_method
        register_method(Method(name="focal-half", loss=Loss(focal_gamma=0.5), source="a user"))
    """))
    run = [sys.executable, "-m", "imbalance.cli", "run", str(ROOT / "params/quick.yaml"), "--dry-run",
           "--outputs", str(tmp_path / "out"), "--set", "methods=[baseline,focal-half,focal-half-la]"]
    env = {"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"}
    without = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert without.returncode == 2 and "'focal-half' is unknown" in without.stderr
    ok = subprocess.run(run + ["--plugin", "my_methods"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "records: 6 points x 3 methods x 3 repeats = 54" in ok.stdout
    missing = subprocess.run(run + ["--plugin", "no_such_module"], cwd=tmp_path, capture_output=True, text=True,
                             env=env)
    assert missing.returncode == 2 and "plugin 'no_such_module': cannot import it" in missing.stderr


def test_plugins_reach_the_training_notebook_as_a_parameter(tmp_path):
    from imbalance.study.params import expand_grid, params_from_dict
    params = load_params(ROOT / "params/quick.yaml")
    assert expand_grid(params)[0].parameters(params)["plugins"] == []
    params = params_from_dict({**params.to_dict(), "plugins": ["my_methods"]})
    assert expand_grid(params)[0].parameters(params)["plugins"] == ["my_methods"]


def test_readme_methods_table_lists_every_registered_method_and_suffix():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Methods"):text.index("## Running a study")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {name.strip("` ") for row in rows for name in row.split("|")[1].split(",")}
    assert named == set(registry.METHODS) | {"<m>-thresh", "<m>-la", "<m>-tau-norm"}


def test_a_method_fingerprint_follows_its_definition_and_its_revision_not_its_prose():
    from dataclasses import replace

    from imbalance.registry import METHODS, fingerprint, legacy_fingerprint
    # golden values: a new Loss field left at its default must not change any existing fingerprint
    assert legacy_fingerprint("baseline") == fingerprint("baseline") == "d267d23d7560"
    assert legacy_fingerprint("cb-focal") == "8cb5f5096270" != fingerprint("cb-focal")   # revision 2 (issue 23)
    assert legacy_fingerprint("ldam-drw") != fingerprint("ldam-drw") and legacy_fingerprint("ros") == fingerprint("ros")
    saved = METHODS["focal"]
    try:
        METHODS["focal"] = replace(saved, changes="reworded", source="elsewhere")
        assert fingerprint("focal") == legacy_fingerprint("focal")
        METHODS["focal"] = replace(saved, revision=2)
        assert fingerprint("focal") != legacy_fingerprint("focal") == "62ced0382307"
        assert fingerprint("focal-la") != legacy_fingerprint("focal-la")     # a post-hoc method follows its base
        assert legacy_fingerprint("focal") == legacy_fingerprint("focal") and len(fingerprint("focal")) == 12
    finally:
        METHODS["focal"] = saved
    assert fingerprint("baseline-thresh") != fingerprint("baseline-la") != fingerprint("baseline")
