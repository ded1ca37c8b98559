"""Run the whole suite; pytest's exit code 5 ("no tests collected") is a failure here.

The 15 slowest tests are listed at the end, so a test that grows slow is seen.
"""

from __future__ import annotations

import subprocess
import sys

args = [sys.executable, "-m", "pytest", "-q", "--create-db", "-p", "no:randomly", "--durations=15", *sys.argv[1:]]
code = subprocess.call(args)
if code == 5:
    print("pytest collected no tests: that is a failure, not a pass", file=sys.stderr)
    sys.exit(1)
sys.exit(code)
