"""``python -m studio …`` (also what ``accelerate launch -m studio train …`` runs)."""
import sys

from studio.cli import main

sys.exit(main())
