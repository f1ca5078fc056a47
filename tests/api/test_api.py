import numpy as np
import pytest
import torch

from forgetkit import unlearn
from forgetkit.data import load_dataset
from forgetkit.models import build_model
from forgetkit.train import TrainRecipe, train_classifier


@pytest.fixture(scope="module")
def digits_models():
    b = load_dataset("digits")
    train = b.train
    forget = np.flatnonzero(train.y.numpy() == 3)
    retain = np.setdiff1d(np.arange(len(train)), forget)
    recipe = TrainRecipe(epochs=8, lr=0.1, batch_size=64)

    def fit(split):
        torch.manual_seed(0)
        m = build_model("mlp", (1, 8, 8), 10, hidden=32, depth=1)
        return train_classifier(m, split, recipe, 0, torch.device("cpu"), 10).eval()

    return b, forget, fit(train), fit(train.subset(retain))


def test_unlearn_api_returns_a_copy_and_metrics(digits_models):
    b, forget, original, retrained = digits_models
    before = {k: v.clone() for k, v in original.state_dict().items()}
    res = unlearn(original, (b.train.x, b.train.y), forget, method="rl", heldout=(b.test.x, b.test.y),
                  weighting="falw", reference=retrained, test=(b.test.x, b.test.y), epochs=3, lr=0.05)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert res.model is not original
    m = res.metrics
    assert set(m) >= {"FA", "RA", "TA", "MIA", "AvgGap", "retrain_FA"}
    assert m["retrain_FA"] < 20 and m["FA"] < 60  # class 3 is being forgotten
    assert m["RA"] > 50
    assert m["AvgGap"] == pytest.approx(np.mean([abs(m[k] - m[f"retrain_{k}"]) for k in ("FA", "RA", "TA", "MIA")]))


def test_unlearn_api_rejects_bad_input(digits_models):
    b, forget, original, _ = digits_models
    data = (b.train.x, b.train.y)
    with pytest.raises(ValueError, match="duplicates"):
        unlearn(original, data, [1, 1], method="ga")
    with pytest.raises(ValueError, match="needs a heldout set"):
        unlearn(original, data, forget, method="rl", weighting="falw")
    with pytest.raises(ValueError, match=r"method 'ga' options: unknown option\(s\) \['learning_rate'\]"):
        unlearn(original, data, forget, method="ga", learning_rate=0.1)
    with pytest.raises(KeyError, match="unknown method"):
        unlearn(original, data, forget, method="nope")
    with pytest.raises(ValueError, match="test set"):
        unlearn(original, data, forget, method="ga", reference=original)


def test_result_has_the_original_beside_the_unlearned(digits_models):
    b, forget, original, retrained = digits_models
    res = unlearn(original, (b.train.x, b.train.y), forget, method="ga", test=(b.test.x, b.test.y),
                  reference=retrained, epochs=2, lr=0.05)
    assert list(res.table.rows) == ["original", "unlearned", "reference"]
    assert res.original_metrics["FA"] > 90 and res.original_metrics["FA"] > res.metrics["FA"]  # class 3 was learnt
    assert res.metrics["AvgGap"] < res.original_metrics["AvgGap"]  # unlearning beat doing nothing
    assert res.metrics["retrain_FA"] == res.table["reference"]["FA"]
    assert res.seconds > 0


def test_evaluate_matches_the_core_metrics(digits_models):
    from forgetkit import evaluate
    from forgetkit.data.base import Split
    from forgetkit.metrics.core import evaluate_model, unlearning_deviation

    b, forget, original, retrained = digits_models
    retain = np.setdiff1d(np.arange(len(b.train)), forget)
    f, r = b.train.subset(forget), b.train.subset(retain)
    original.train()  # evaluate must leave each model in the mode it found it
    table = evaluate({"original": original}, reference=retrained, forget=(f.x, f.y), retain=r,
                     test=(b.test.x, b.test.y), tau=0.1)
    assert original.training and not retrained.training
    cpu = torch.device("cpu")
    ev, ref = evaluate_model(original, f, r, b.test, cpu), evaluate_model(retrained, f, r, b.test, cpu)
    row = table["original"]
    for k in ("FA", "RA", "TA", "MIA"):
        assert row[k] == pytest.approx(ev[k]) and table["reference"][k] == pytest.approx(ref[k])
    assert row["AvgGap"] == pytest.approx(np.mean([abs(ev[k] - ref[k]) for k in ("FA", "RA", "TA", "MIA")]))
    dev = unlearning_deviation(ev["forget_probs"], ref["forget_probs"], 0.1)
    assert row["dev_under"] == pytest.approx(dev["under"]) and row["dev_under"] > 50  # not forgotten at all
    assert table["reference"]["AvgGap"] == 0 and table["reference"]["dev_faithful"] == 100
    df = table.to_pandas()
    assert list(df.index) == ["original", "reference"] and df.loc["original", "FA"] == pytest.approx(ev["FA"])
    lines = str(table).splitlines()
    assert lines[0].split()[:3] == ["model", "FA", "RA"] and len({len(line) for line in lines}) == 1  # aligned


def test_evaluate_runs_registered_evaluators_on_user_data(digits_models):
    from forgetkit import evaluate

    b, forget, original, retrained = digits_models
    retain = np.setdiff1d(np.arange(len(b.train)), forget)
    f, r = b.train.subset(forget), b.train.subset(retain)
    table = evaluate({"original": original}, reference=retrained, forget=f, retain=r, test=b.test,
                     metrics=["FA", "class_acc", "js_divergence"], forget_classes=[3])
    assert set(table["original"]) == {"FA", "Acc_r", "Acc_f", "JS_retrain"}
    assert table["original"]["Acc_f"] > 80 and table["reference"]["Acc_f"] < 20
    assert table["reference"]["JS_retrain"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match=r"metric .class_acc. measures whole-class forgetting: pass forget_classes"):
        evaluate({"o": original}, reference=retrained, forget=f, retain=r, test=b.test, metrics=["class_acc"])
    with pytest.raises(ValueError, match="needs 3 retrained references; pass reference=\\[...\\]"):
        evaluate({"o": original}, reference=retrained, forget=f, retain=r, test=b.test, metrics=["mia_nn"],
                 forget_classes=[3])


def test_evaluate_rejects_bad_input(digits_models):
    from forgetkit import evaluate
    from forgetkit.models import build_model

    b, forget, original, retrained = digits_models
    f, r = b.train.subset(forget), b.train.subset(np.setdiff1d(np.arange(len(b.train)), forget))
    other = build_model("mlp", (1, 8, 8), 12, hidden=32, depth=1)
    with pytest.raises(ValueError, match=r"different numbers of outputs: \{'mine': 10, 'other': 12\}"):
        evaluate({"mine": original, "other": other}, forget=f, retain=r, test=b.test)
    with pytest.raises(ValueError, match="unknown metric 'FAA'; known: FA, RA"):
        evaluate({"mine": original}, forget=f, retain=r, test=b.test, metrics=["FAA"])
    with pytest.raises(ValueError, match="'AvgGap' compares to a retrained model: pass reference"):
        evaluate({"mine": original}, forget=f, retain=r, test=b.test, metrics=["AvgGap"])
    with pytest.raises(TypeError, match="non-empty dict"):
        evaluate([original], forget=f, retain=r, test=b.test)
    with pytest.raises(ValueError, match="test: samples have shape"):
        evaluate({"mine": original}, forget=f, retain=r, test=(b.test.x[:, :, :4], b.test.y))
    with pytest.raises(ValueError, match=r"evaluator 'zrf' options.variant: expected str"):
        evaluate({"mine": original}, forget=f, retain=r, test=b.test, metrics=["zrf"], options={"zrf": {"variant": 1}})


def test_top_level_exports():
    import forgetkit
    from forgetkit.audit import audit
    from forgetkit.plugins import register_method

    assert forgetkit.audit.audit is audit and callable(forgetkit.audit)  # the audit package calls audit()
    assert forgetkit.register_method is register_method
    assert callable(forgetkit.unlearn) and callable(forgetkit.evaluate)  # not the forgetkit.unlearn package
    assert set(forgetkit.__all__) <= set(dir(forgetkit))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        forgetkit.nope
