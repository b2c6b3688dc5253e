# Two entry points (see README): `make study` and `make test`.
# Both create .venv on first use from requirements.txt (the single source of pins).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KERNEL := imbalance

.PHONY: study test venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e '.[dev]'
	# the notebooks run on this venv's own kernel, never on a machine-wide `python3` one
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (imbalance)" >/dev/null
	touch $(STAMP)

# the last step regenerates the README's quick-study claims from the database present (a retrain on
# another CPU moves them) and ends with the one-sentence answer at the hardest point and the report's path
study: $(STAMP)
	$(PY) -m imbalance.cli run params/quick.yaml
	$(PY) -m imbalance.cli report params/quick.yaml
	$(PY) -m imbalance.analysis.quickstudy --write

# tests/ (the 25 slowest named at the end, so the suite's time has a visible owner; `-m "not slow"`
# skips the tests marked slow) then nbval over the notebooks, on this venv's kernel (--nbval-current-env: the venv's
# python runs pytest); nbval checks the cells marked NBVAL_CHECK_OUTPUT (class counts) exactly.
test: $(STAMP)
	$(PY) -m pytest -q --durations=25 tests
	$(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=300 notebooks

clean-venv:
	rm -rf $(VENV)
