"""Re-run the scenario library with other seeds or other collection intervals, to see
that the rules do not lean on one random draw or one timing:

    python -m tests.lib.scenarios.sweep seeds 5      # each case with 5 more seeds
    python -m tests.lib.scenarios.sweep intervals    # each case at 5 s, 15 s and 60 s

Prints one line per case that misses an expectation, then `sweep_bad: N of M`.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from poolboard.lib.diagnosis import LEAK, diagnose

from . import SPECS
from .model import Spec, simulate


def problems(spec: Spec) -> list[str]:
    r = simulate(spec)
    end = spec.duration_s if spec.data_until_s is not None else r.ticks[-1]
    found = {f.kind for f in diagnose(r.input_at(end))}
    out = []
    if not (spec.expected <= found <= spec.expected | spec.allowed):
        out.append(f"found {sorted(found)} at the end")
    step = max(1, len(r.ticks) // 90)
    ticks = r.ticks[::step] + [r.ticks[-1]]
    if spec.no_leak_ever:
        leaky = [t for t in ticks if LEAK in {f.kind for f in diagnose(r.input_at(t))}]
        if leaky:
            out.append(f"leak at {leaky[0]:.0f}s")
    if spec.leak_deadline and r.leak_times:
        slowest = max(spec.interval_s, spec.snapshot_s or 0.0, spec.agent_interval_s if spec.agent else 0.0)
        deadline = r.leak_times[0] + spec.thresholds.leak_s + 2 * slowest
        at = max(t for t in r.ticks if t <= deadline)
        if LEAK not in {f.kind for f in diagnose(r.input_at(at))}:
            out.append(f"no leak by {deadline - r.leak_times[0]:.0f}s after the leak")
        closed = [t for t in ticks if t >= deadline and LEAK not in {f.kind for f in diagnose(r.input_at(t))}]
        if closed:
            out.append(f"leak closed at {closed[0]:.0f}s")
    return out


def variants(mode: str, count: int) -> list[Spec]:
    if mode == "seeds":
        return [replace(s, seed=s.seed + 100 * k) for k in range(1, count + 1) for s in SPECS]
    return [replace(s, interval_s=iv) for iv in (5.0, 15.0, 60.0) for s in SPECS if s.interval_s != iv]


def main(mode: str = "seeds", count: int = 3) -> None:
    specs = variants(mode, count)
    bad = 0
    for spec in specs:
        found = problems(spec)
        if found:
            bad += 1
            print(f"{spec.name} seed={spec.seed} interval={spec.interval_s:g}s: {'; '.join(found)}", flush=True)
    print(f"sweep_bad: {bad} of {len(specs)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "seeds", int(sys.argv[2]) if len(sys.argv) > 2 else 3)
