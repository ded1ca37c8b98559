"""`make bench`: run every bench/bench_*.py in turn; each prints `name: value` lines."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

# Benchmarks run poolboard code with throwaway databases; a key of their own keeps the
# development-key warning out of the figures.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

HERE = Path(__file__).resolve().parent

failed = 0
for script in sorted(HERE.glob("bench_*.py")):
    print(f"# {script.name}", flush=True)
    code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
    if code:
        print(f"# {script.name} failed with exit code {code}", flush=True)
        failed += 1
sys.exit(1 if failed else 0)
