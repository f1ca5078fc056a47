"""``python -m forgetkit.cli``: the ``forgetkit`` command."""
import sys

from . import main

sys.exit(main())
