"""The fitted static rules are data: ``keras_tconv/ops/choosing/static_rules.json``,
written by ``tools/fit_static_rule.py`` from the stored sample results, read by
``keras_tconv.ops.choosing.rules``. Refitting those results gives the stored rules."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from keras_tconv.ops.choosing import rules

ROOT = Path(__file__).resolve().parents[2]


def _fitting_tool():
    spec = importlib.util.spec_from_file_location("fit_static_rule", ROOT / "tools" / "fit_static_rule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STORED = json.loads((Path(rules.__file__).with_name(rules.FITTED_RULES_FILE)).read_text())["rules"]


def test_the_library_reads_the_stored_rules():
    assert set(rules.RULES) == set(STORED) == {"Eigen", "oneDNN"}
    for library, entry in STORED.items():
        assert rules.RULES[library] == rules.StaticRule(**entry["rule"])


@pytest.mark.parametrize("library", sorted(STORED))
def test_refitting_the_stored_results_gives_the_stored_rule(library):
    tool = _fitting_tool()
    entry = STORED[library]
    [(fitted_library, fitted)] = tool.fit_files([ROOT / entry["results"]]).items()
    assert fitted_library == library
    assert fitted["rule"] == entry["rule"]
    assert fitted["score"] == pytest.approx(entry["score"])
