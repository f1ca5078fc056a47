"""IU, SVD, SCAR and L2UL on tiny digits problems: each forgets, keeps the rest, and refuses bad input."""
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from forgetkit.data.base import Split
from forgetkit.methods import build_method
from forgetkit.methods.l2ul import l2_pgd_targeted
from forgetkit.models import build_model
from forgetkit.unlearn.context import UnlearnContext


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x, y, perm[:1500], perm[1500:]


def fit_adam(model, x, y, steps=300, lr=0.01):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def mlp(digits):
    x, y, tr, _ = digits
    torch.manual_seed(0)
    return fit_adam(build_model("mlp", (64,), 10, hidden=32, depth=1), x[tr], y[tr])


def accuracy(model, split):
    with torch.no_grad():
        return (model(split.x.float() / (255.0 if split.x.dtype == torch.uint8 else 1.0)).argmax(1)
                == split.y).float().mean().item()


def class_context(digits, model, cls=3, images=False):
    x, y, tr, ho = digits
    if images:
        x = (x * 255).round().to(torch.uint8).view(-1, 1, 8, 8)
    c = y[tr] == cls
    return UnlearnContext(original=model, forget=Split(x[tr][c], y[tr][c]), retain=Split(x[tr][~c], y[tr][~c]),
                          heldout=Split(x[ho], y[ho]), num_classes=10, kind="image" if images else "tabular",
                          forget_classes=(cls,))


def random_context(digits, model, n_forget=150, heldout=True):
    x, y, tr, ho = digits
    f, r = tr[:n_forget], tr[n_forget:]
    return UnlearnContext(original=model, forget=Split(x[f], y[f]), retain=Split(x[r], y[r]),
                          heldout=Split(x[ho], y[ho]) if heldout else None, num_classes=10, kind="tabular")


# ---- IU -------------------------------------------------------------------------------------------

def fit_logreg(x, y, reg=1e-3):
    torch.manual_seed(0)
    m = build_model("logreg", (64,), 10)
    opt = torch.optim.LBFGS(m.parameters(), lr=1, max_iter=300, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y) + reg / 2 * sum((p ** 2).sum() for p in m.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return m.eval()


@pytest.fixture(scope="module")
def logreg_case(digits):
    x, y, _, _ = digits
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    f, r = perm[:180], perm[180:]
    original, retrained = fit_logreg(x, y), fit_logreg(x[r], y[r])
    ctx = UnlearnContext(original=original, forget=Split(x[f], y[f]), retain=Split(x[r], y[r]),
                         num_classes=10, kind="tabular")
    return original, retrained, ctx


def flat(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


@pytest.mark.parametrize("options", [{"recursion": "textbook", "alpha": 1.0, "damping": 1e-2},
                                     {"recursion": "as_coded", "alpha": 30.0}])
def test_iu_moves_logistic_regression_toward_exact_retrain(logreg_case, options):
    original, retrained, ctx = logreg_case
    before = (flat(original) - flat(retrained)).norm().item()
    unlearned, info = build_method("iu", **options).unlearn(original, ctx)
    after = (flat(unlearned) - flat(retrained)).norm().item()
    assert after < 0.97 * before, (before, after, info)
    assert info["fisher_samples"] == 1001
    assert build_method("iu", **options).params()["recursion"] == options["recursion"]


def test_iu_last_layer_scope_moves_only_the_head(digits, mlp):
    ctx = random_context(digits, mlp)
    unlearned, _ = build_method("iu", param_scope="last_layer", fisher_samples=200).unlearn(mlp, ctx)
    assert torch.equal(unlearned[1].weight, mlp[1].weight)
    assert not torch.equal(unlearned[3].weight, mlp[3].weight)


def test_iu_refuses_bad_input(digits, mlp):
    with pytest.raises(ValueError, match="recursion"):
        build_method("iu", recursion="woodbury")
    with pytest.raises(ValueError, match="param_scope"):
        build_method("iu", param_scope="first_layer")
    x, y, tr, _ = digits
    no_retain = UnlearnContext(original=mlp, forget=Split(x[:10], y[:10]), num_classes=10, kind="tabular")
    with pytest.raises(ValueError, match="needs a retain set"):
        build_method("iu").unlearn(mlp, no_retain)
    with pytest.raises(ValueError, match="max_memory_mb"):
        build_method("iu", recursion="textbook", max_memory_mb=0.01).unlearn(mlp, random_context(digits, mlp))


# ---- SVD ------------------------------------------------------------------------------------------

def test_svd_forgets_a_class_of_an_mlp(digits, mlp):
    ctx = class_context(digits, mlp)
    assert accuracy(mlp, ctx.forget) > 0.95
    unlearned, info = build_method("svd").unlearn(mlp, ctx)
    assert accuracy(unlearned, ctx.forget) < 0.4
    assert accuracy(unlearned, ctx.retain) > 0.9
    assert info["layers"] == ["1", "3"]


def test_svd_conv_path_on_images(digits):
    x, y, tr, _ = digits
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 64, 10))
    cnn = fit_adam(cnn, x[tr].view(-1, 1, 8, 8), y[tr], steps=80)
    ctx = class_context(digits, cnn, cls=0, images=True)
    unlearned, info = build_method("svd", alpha_f=10.0, max_patches=2000).unlearn(cnn, ctx)
    assert info["layers"] == ["0", "4"]
    assert not torch.equal(unlearned[0].weight, cnn[0].weight)
    fa_before, fa_after = accuracy(cnn, ctx.forget), accuracy(unlearned, ctx.forget)
    assert fa_after < 0.75 * fa_before, (fa_before, fa_after)
    assert accuracy(unlearned, ctx.retain) > 0.5


def test_svd_refuses_bad_input(digits, mlp):
    with pytest.raises(ValueError, match="whole classes"):
        build_method("svd").unlearn(mlp, random_context(digits, mlp))
    conv1d = nn.Sequential(nn.Unflatten(1, (1, 64)), nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(124, 10))
    with pytest.raises(ValueError, match="Conv1d"):
        build_method("svd").unlearn(conv1d, class_context(digits, conv1d))
    grouped = nn.Sequential(nn.Unflatten(1, (4, 4, 4)), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(),
                            nn.Linear(16, 10))
    with pytest.raises(ValueError, match="groups=2"):
        build_method("svd").unlearn(grouped, class_context(digits, grouped))


# ---- SCAR -----------------------------------------------------------------------------------------

def test_scar_forgets_a_class_and_keeps_the_rest(digits, mlp):
    ctx = class_context(digits, mlp)
    unlearned, info = build_method("scar", batch_size=64, epochs=10, lr=5e-3).unlearn(mlp, ctx)
    assert accuracy(unlearned, ctx.forget) < 0.3
    assert accuracy(unlearned, ctx.retain) > 0.9
    assert info["surrogate"] == "heldout" and info["steps"] > 0
    # one history entry per epoch run, each with the forget accuracy the stop rule read
    hist = info["history"]
    assert hist and all(0 <= h["forget_acc"] <= 1 for h in hist)
    if info["stopped_at"] is not None:  # stopped: after epoch index 2, below the class target 0.01
        assert len(hist) >= 3 and hist[-1]["forget_acc"] < 0.01
    assert accuracy(unlearned, ctx.forget) == pytest.approx(hist[-1]["forget_acc"])


def test_scar_noise_surrogate_needs_no_heldout(digits, mlp):
    ctx = random_context(digits, mlp, heldout=False)
    method = build_method("scar", surrogate="noise", noise_samples=256, batch_size=64, epochs=1)
    assert "heldout" not in method.needs
    unlearned, info = method.unlearn(mlp, ctx)
    assert info["surrogate_size"] == 256
    assert accuracy(unlearned, ctx.retain) > 0.5


def test_scar_treats_a_class_left_without_retain_samples_as_removed(digits, mlp):
    from forgetkit.methods.scar import removed_classes

    x, y, tr, ho = digits
    whole = y[tr] == 3
    part = torch.zeros_like(whole)
    part[torch.nonzero(y[tr] == 5).flatten()[:20]] = True
    f = whole | part
    ctx = UnlearnContext(original=mlp, forget=Split(x[tr][f], y[tr][f]), retain=Split(x[tr][~f], y[tr][~f]),
                         heldout=Split(x[ho], y[ho]), num_classes=10, kind="tabular")  # a mixed request
    assert removed_classes(ctx) == [3]
    unlearned, _ = build_method("scar", batch_size=64, epochs=2, lr=5e-3).unlearn(mlp, ctx)
    assert accuracy(unlearned, Split(x[tr][whole], y[tr][whole])) < accuracy(mlp, Split(x[tr][whole], y[tr][whole]))


def test_scar_refuses_bad_input(digits, mlp):
    with pytest.raises(ValueError, match="surrogate"):
        build_method("scar", surrogate="imagenet")
    with pytest.raises(ValueError, match="needs a heldout set"):
        build_method("scar").unlearn(mlp, random_context(digits, mlp, heldout=False))


# ---- L2UL -----------------------------------------------------------------------------------------

def test_l2ul_forgets_instances_from_the_forget_set_alone(digits, mlp):
    ctx = class_context(digits, mlp)
    ctx.retain = None  # forget-set only: the method must not need D_r
    unlearned, info = build_method("l2ul", num_adv_images=2, pgd_iters=10, pgd_eps=1.0, lr=1e-2,
                                   epochs=20).unlearn(mlp, ctx)
    assert accuracy(unlearned, ctx.forget) == 0.0
    x, y, tr, _ = digits
    keep = y[tr] != 3
    assert accuracy(unlearned, Split(x[tr][keep], y[tr][keep])) > 0.6
    assert info["adversarial"] == 2 * len(ctx.forget)
    # the stop rule ended the run on the step forget accuracy hit 0, and the history was kept
    assert info["stopped_at"] == info["steps"] and 1 <= len(info["history"]) <= 20
    assert info["history"][-1]["epoch"] == len(info["history"]) - 1
    _, full = build_method("l2ul", num_adv_images=2, pgd_iters=10, pgd_eps=1.0, lr=1e-2, epochs=2,
                           stop_at_zero=False).unlearn(mlp, ctx)
    assert full["stopped_at"] is None and len(full["history"]) == 2


def test_targeted_l2_pgd_stays_in_the_ball_and_in_range(mlp, digits):
    x, y, tr, _ = digits
    xs, ys = x[tr[:64]], y[tr[:64]]
    target = (ys + 1) % 10
    adv = l2_pgd_targeted(mlp, xs, target, eps=2.0, step=0.2, iters=30, clamp=True,
                          gen=torch.Generator().manual_seed(0))
    assert (adv - xs).flatten(1).norm(dim=1).max() <= 2.0 + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert (mlp(adv).argmax(1) == target).float().mean() > 0.8


def test_l2ul_refuses_bad_input(digits, mlp):
    with pytest.raises(ValueError, match="num_adv_images"):
        build_method("l2ul", num_adv_images=0)
    with pytest.raises(ValueError, match="no option"):
        build_method("l2ul", pgd_radius=1.0)
