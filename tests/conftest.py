import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# pytest-xdist runs one worker per core: one thread each avoids oversubscription on 2 cores.
torch.set_num_threads(1)
