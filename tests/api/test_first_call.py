"""First-call latency: SGD and Adam(W) on CPU run without torch.optim, so torch._dynamo is never
imported, and their updates are torch.optim's, bit for bit."""
import copy
import subprocess
import sys

import pytest
import torch

from forgetkit.unlearn.optim import LoopAdam, LoopSGD, Optimisation, build_optimizer


def run_both(make_torch, make_loop, steps=5, set_to_none=True):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.Linear(3, 3))
    nets = [net, copy.deepcopy(net)]
    opts = [make_torch(nets[0].parameters()), make_loop(nets[1].parameters())]
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for step in range(steps):
        for n, o in zip(nets, opts):
            o.zero_grad(set_to_none=set_to_none)
            for g in o.param_groups:
                g["lr"] = 0.1 / (step + 1)  # as the engine's built-in schedules set it
            loss = torch.nn.functional.cross_entropy(n[:3](x), y)  # the last layer gets no gradient
            loss.backward()
            o.step()
    return nets, opts


def assert_same(nets, opts, keys):
    (a, b), (oa, ob) = nets, opts
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
        for key in keys:
            buf_a, buf_b = oa.state[pa].get(key), ob.state[pb].get(key)
            assert (buf_a is None) == (buf_b is None) and (buf_a is None or torch.equal(buf_a, buf_b)), (name, key)


@pytest.mark.parametrize("momentum, weight_decay, set_to_none", [(0.9, 5e-4, True), (0.0, 0.0, True),
                                                                 (0.5, 0.01, False)])
def test_loop_sgd_is_torch_sgd_bit_for_bit(momentum, weight_decay, set_to_none):
    nets, opts = run_both(lambda p: torch.optim.SGD(p, lr=0.1, momentum=momentum, weight_decay=weight_decay),
                          lambda p: LoopSGD(p, lr=0.1, momentum=momentum, weight_decay=weight_decay),
                          set_to_none=set_to_none)
    assert_same(nets, opts, ["momentum_buffer"])


@pytest.mark.parametrize("adamw, weight_decay, betas", [(False, 0.0, (0.9, 0.999)), (False, 5e-4, (0.8, 0.99)),
                                                        (True, 0.01, (0.9, 0.999))])
def test_loop_adam_is_torch_adam_bit_for_bit(adamw, weight_decay, betas):
    cls = torch.optim.AdamW if adamw else torch.optim.Adam
    nets, opts = run_both(lambda p: cls(p, lr=0.1, betas=betas, eps=1e-8, weight_decay=weight_decay),
                          lambda p: LoopAdam(p, lr=0.1, betas=betas, eps=1e-8, weight_decay=weight_decay,
                                             decoupled=adamw), steps=7)
    assert_same(nets, opts, ["exp_avg", "exp_avg_sq"])


def test_which_optimiser_is_built():
    p = [torch.zeros(3, requires_grad=True)]
    assert isinstance(build_optimizer(p, Optimisation()), LoopSGD)
    assert isinstance(build_optimizer(p, Optimisation(optimizer="adamw")), LoopAdam)
    assert isinstance(build_optimizer(p, Optimisation(schedule="StepLR", schedule_options={"step_size": 1})),
                      torch.optim.SGD)  # a torch scheduler needs a torch optimiser
    assert isinstance(build_optimizer(p, Optimisation(optimizer="adam", schedule="StepLR",
                                                      schedule_options={"step_size": 1})), torch.optim.Adam)
    with pytest.raises(ValueError, match="empty parameter list"):
        LoopSGD([], lr=0.1)


SCRIPT = """
import sys, torch, forgetkit
x = torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8)
y = torch.arange(64) % 4
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
forgetkit.unlearn(model, (x, y), list(range(8)), method="rl", epochs=1, batch_size=16)
print("dynamo" if "torch._dynamo" in sys.modules else "no dynamo")
"""


def test_a_first_unlearn_call_does_not_import_dynamo():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no dynamo"


def test_import_forgetkit_leaves_pandas_sklearn_and_scipy_stats_to_first_use():
    """They cost about 1.5 s of every CLI start and most calls never touch them (tabular data, the SVC
    attacks, the audit's tests import them where they are used)."""
    heavy = ["pandas", "sklearn", "scipy.stats"]
    code = f"import sys, forgetkit; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
