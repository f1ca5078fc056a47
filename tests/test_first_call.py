"""First-call latency: plain SGD on CPU runs without torch.optim, so torch._dynamo is never imported,
and its update is torch.optim.SGD's, bit for bit."""
import subprocess
import sys

import pytest
import torch

from forgetkit.unlearn.optim import LoopSGD, Optimisation, build_optimizer


def run_both(momentum, weight_decay, steps=5, set_to_none=True):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.Linear(3, 3))
    nets = [net, __import__("copy").deepcopy(net)]
    opts = [torch.optim.SGD(nets[0].parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay),
            LoopSGD(nets[1].parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)]
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


@pytest.mark.parametrize("momentum, weight_decay, set_to_none", [(0.9, 5e-4, True), (0.0, 0.0, True),
                                                                 (0.5, 0.01, False)])
def test_loop_sgd_is_torch_sgd_bit_for_bit(momentum, weight_decay, set_to_none):
    (a, b), (oa, ob) = run_both(momentum, weight_decay, set_to_none=set_to_none)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
        buf_a, buf_b = oa.state[pa].get("momentum_buffer"), ob.state[pb].get("momentum_buffer")
        assert (buf_a is None) == (buf_b is None) and (buf_a is None or torch.equal(buf_a, buf_b)), name


def test_which_optimiser_is_built():
    p = [torch.zeros(3, requires_grad=True)]
    assert isinstance(build_optimizer(p, Optimisation()), LoopSGD)
    assert isinstance(build_optimizer(p, Optimisation(schedule="StepLR", schedule_options={"step_size": 1})),
                      torch.optim.SGD)  # a torch scheduler needs a torch optimiser
    assert isinstance(build_optimizer(p, Optimisation(optimizer="adam")), torch.optim.Adam)
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
