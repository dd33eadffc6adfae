#!/usr/bin/env python
"""LoRA Studio — run `python studio.py --help` for the commands."""
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported anywhere

from studio.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
