"""`python -m openpi_core.serving ...` is `openpi-serve ...`."""

import sys

from openpi_core.serving.cli import main

if __name__ == "__main__":
    sys.exit(main())
