"""How long the diagnosis engine takes for a fleet: `python -m tests.lib.scenarios.bench [services] [points]`.

Inputs are the last `points` collection ticks of the scenario library's runs (with
their server snapshots, episodes and agent reports), cycled to `services` services.
Prints `name: value` lines.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from poolboard.lib.diagnosis import DiagnosisInput, diagnose_many

from . import SPECS, run


def fleet_inputs(services: int = 1000, points: int = 60) -> list[DiagnosisInput]:
    templates = []
    for spec in SPECS:
        r = run(spec.name)
        now = r.ticks[-1]
        window = points * spec.interval_s
        templates.append(r.input_at(now, history_s=window - spec.interval_s / 2))
    return [replace(templates[i % len(templates)], service=f"svc-{i}") for i in range(services)]


def main(services: int = 1000, points: int = 60, rounds: int = 5) -> None:
    inputs = fleet_inputs(services, points)
    timings, cpu = [], []
    for _ in range(rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        diagnose_many(inputs)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    timings.sort()
    cpu.sort()
    print(f"diagnosis_services: {services}")
    print(f"diagnosis_points_per_service: {sum(len(i.total) for i in inputs) / len(inputs):.0f}")
    print(f"diagnosis_engine_ms_{services}: {timings[len(timings) // 2] * 1000:.0f}")
    print(f"diagnosis_engine_best_ms_{services}: {timings[0] * 1000:.0f}")
    # CPU time of this process: what the engine costs when the machine's 2 cores are shared.
    print(f"diagnosis_engine_cpu_ms_{services}: {cpu[len(cpu) // 2] * 1000:.0f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
