"""Imported by the prestarted interpreter in tests: changes the first environment string, as an
import that sets a variable can (setproctitle finds the command line from that string)."""

import os

_first = next(iter(os.environ))
os.environ[_first] = os.environ[_first] + "-changed-by-an-import"
