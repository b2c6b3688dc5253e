"""docs/methods.md has a card for every registered method and every post-hoc suffix, and each card's
numerical check names a test that exists (issue 23)."""
import re
from pathlib import Path

from imbalance.registry import METHODS, POSTHOC

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs" / "methods.md").read_text()
CARDS = dict(re.findall(r"^### (.+?)\n(.*?)(?=^### |^## |\Z)", TEXT, re.S | re.M))


def test_every_registered_method_and_post_hoc_suffix_has_a_card():
    expected = set(METHODS) | {f"`<m>-{s}` (post-hoc)" for s in POSTHOC}
    assert expected <= set(CARDS), sorted(expected - set(CARDS))


def test_every_card_names_its_reference_formula_deviations_and_an_existing_test():
    for name, body in CARDS.items():
        for part in ("- Reference:", "- Formula:", "- Deviations:", "- Check:"):
            assert part in body, (name, part)
        path, test = re.search(r"- Check: `(tests/\S+\.py)::(test_\w+)`", body).groups()
        assert re.search(rf"^def {test}\(", (ROOT / path).read_text(), re.M), (name, path, test)
