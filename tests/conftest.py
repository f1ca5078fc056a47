import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# the on-disk dataset writers of tests/data/test_data_images.py are shared with the registry-wide
# dataset contract (tests/project): importable from any test folder, whichever is collected first
sys.path.insert(0, str(Path(__file__).parent / "data"))
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


@pytest.fixture(scope="session")
def shared_model_cache(tmp_path_factory) -> str:
    """One model cache for every end-to-end run of the suite: presets that train the same original
    (same data, model and recipe) train it once. The directory sits above the per-worker base
    temp of pytest-xdist, so the workers share it; the cache's per-key file lock makes one worker
    train a model while the others wait and load it."""
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if root.name.startswith("popen-gw") else root) / "shared-model-cache"
    shared.mkdir(exist_ok=True)
    return str(shared)
