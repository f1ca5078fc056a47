import os

os.environ.setdefault("MPLBACKEND", "Agg")
# pytest-xdist runs one worker per core: forgetkit runs in a worker take one thread too.
os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402

# pytest-xdist runs one worker per core: one thread each avoids oversubscription on 2 cores.
torch.set_num_threads(1)
