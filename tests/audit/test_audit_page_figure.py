"""The page's figure shows the comparison behind the verdict: all classes, then the classes that
decided it first; a smoke run's pages leave the figure out."""
import numpy as np

from forgetkit.audit import audit_scores
from forgetkit.audit.report import _shown_classes, render

K = 8


def _scores(phi_f, phi_h):
    yf, yh = np.arange(len(phi_f)) % K, np.arange(len(phi_h)) % K
    return {"forget": phi_f, "forget_correct": phi_f > 0, "forget_y": yf,
            "heldout": phi_h, "heldout_correct": phi_h > 0, "heldout_y": yh}


def _memorised_class_six():
    rng = np.random.default_rng(0)
    phi_f, phi_h = rng.normal(2, 1.5, 1600), rng.normal(2, 1.5, 3200)
    phi_f[np.arange(1600) % K == 6] += 5  # class 6 of the forget set is remembered
    return audit_scores(_scores(phi_f, phi_h), num_classes=K, n_boot=20)


def test_the_deciding_class_is_shown_first_and_at_most_four():
    r = _memorised_class_six()
    shown = _shown_classes(r)
    assert shown[0] == 6 and len(shown) <= 4


def test_a_page_without_figure_has_no_image_and_says_so():
    r = _memorised_class_six()
    with_figure, without = render(r), render(r, figure=False)
    assert b"<img" in with_figure["audit.html"] and b"<img" not in without["audit.html"]
    assert b"Histograms left out" in without["audit.md"]
