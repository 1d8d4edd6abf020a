"""The daylight theme: every text colour on its background at 7:1 or more (WCAG 2)."""

from __future__ import annotations

import pytest

from ui import theme


def test_contrast_formula_matches_the_known_extremes() -> None:
    assert theme.contrast("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert theme.contrast("#777777", "#777777") == pytest.approx(1.0)
    assert theme.contrast("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.01)  # WCAG's AA grey


@pytest.mark.parametrize(("what", "text", "background"), theme.TEXT_PAIRS,
                         ids=[p[0] for p in theme.TEXT_PAIRS])
def test_every_text_on_its_background_reaches_7_to_1(what: str, text: str, background: str
                                                     ) -> None:
    ratio = theme.contrast(text, background)
    assert ratio >= theme.MIN_CONTRAST, f"{what}: {text} on {background} is {ratio:.2f}:1"


def test_sizes_stay_above_the_glove_minima() -> None:
    assert theme.PRIMARY_MM >= theme.PRIMARY_MIN_MM
    assert theme.SECONDARY_MM >= theme.SECONDARY_MIN_MM
    assert theme.GAP_MM >= theme.GAP_MIN_MM
