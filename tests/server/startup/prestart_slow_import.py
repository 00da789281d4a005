"""A module whose import takes a minute (test_prestart: release does not wait for it)."""

import time

time.sleep(60)
