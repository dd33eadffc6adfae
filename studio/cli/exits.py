"""The exit codes of every ``studio.py`` verb, one set for all of them (``python studio.py VERB …; echo $?``).

- 0: done (``lint``: no errors, warnings allowed; ``scan``: the folder or its clean copy is ready for training;
  ``inspect``: every key loads in both clients).
- 1: the check ran and found something to fix first (``lint``: caption errors; ``scan``: pictures or captions that
  need action; ``inspect``: a key a client would not load, or would load wrongly).
- 2: a problem with what was passed (config, data, model, LoRA file, folder, option values); argparse's own usage
  errors exit 2 as well.
- 3: training failed (the run folder keeps what was saved).
- 130: stopped with Ctrl-C after a clean finish (a checkpoint, the captions or the grid cells made so far are
  written); 128 + SIGINT, what a shell reports for a program Ctrl-C ended.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USER_ERROR = 2
EXIT_FAILED = 3
EXIT_STOPPED = 130
