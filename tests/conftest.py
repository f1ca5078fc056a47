import os

os.environ.setdefault("MPLBACKEND", "Agg")
# pytest-xdist runs one worker per core: forgetkit runs in a worker take one thread too.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

# pytest-xdist runs one worker per core: one thread each avoids oversubscription on 2 cores.
torch.set_num_threads(1)


@pytest.fixture
def clean_registries():
    """Plug-ins a test registers must not leak into the registry-wide suites of other tests."""
    from forgetkit.data.base import DATASETS
    from forgetkit.methods.base import METHODS
    from forgetkit.metrics.evaluators import EVALUATORS
    from forgetkit.models import MODELS
    from forgetkit.unlearn.weightings import WEIGHTINGS

    registries = (METHODS, WEIGHTINGS, EVALUATORS, DATASETS, MODELS)
    saved = [dict(r._items) for r in registries]
    yield
    for r, items in zip(registries, saved):
        r._items.clear()
        r._items.update(items)
