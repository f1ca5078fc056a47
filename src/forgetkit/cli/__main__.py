"""``python -m forgetkit.cli``: the ``forgetkit`` command."""
import sys

from . import main

if __name__ == "__main__":  # importing this module (a registry-wide import walk) must not run the CLI
    sys.exit(main())
