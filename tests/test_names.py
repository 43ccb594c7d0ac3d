"""Names are ASCII and compared exactly: a fullwidth look-alike (NFKC folds 'ｐｈｉ' into 'phi', as Python's
parser does) is refused wherever a name is written, never silently taken for the name it resembles."""

import pytest
from conftest import MODELS

from specgrad.spec import check_spec


@pytest.mark.parametrize(
    "formula,col", [("ｐｈｉ @ k", 1), ("phi @ ｋ", 7), ("ｓｉｎ(phi) @ k", 1), ("sum(phi * k, ａｘｉｓ=1)", 14)]
)
def test_a_look_alike_name_in_a_formula_is_refused(formula, col):
    ok, diags = check_spec(MODELS / "poly.yaml", [f"model.nodes.1.y_hat={formula}"])
    assert not ok
    [d] = diags
    assert "invalid character" in d.message and "look-alike" in d.message
    assert d.location.col == len("model.nodes.1.y_hat=") + col  # col: 1-based in the formula


def test_a_look_alike_name_as_a_key_is_refused(tmp_path):
    spec = (MODELS / "poly.yaml").read_text().replace("- phi: powers", "- ｐｈｉ: powers")
    (tmp_path / "spec.yaml").write_text(spec)
    ok, diags = check_spec(tmp_path / "spec.yaml")
    assert not ok
    assert any(
        d.message == "'ｐｈｉ' is not a valid name here (ASCII letters, digits and _; not starting with a digit)"
        for d in diags
    )
