"""How long the diagnosis engine takes for a fleet: `python -m tests.lib.scenarios.bench [services] [points]`.

Inputs are the last `points` collection ticks of the scenario library's runs (with
their server snapshots, episodes and agent reports), cycled to `services` services.
Prints `name: value` lines.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from poolboard.lib.diagnosis import _POOL_FIELDS, DiagnosisInput, PoolColumns, PoolPoint, diagnose_many

from . import SPECS, run


def fleet_inputs(services: int = 1000, points: int = 60) -> list[DiagnosisInput]:
    templates = []
    for spec in SPECS:
        r = run(spec.name)
        now = r.ticks[-1]
        window = points * spec.interval_s
        templates.append(r.input_at(now, history_s=window - spec.interval_s / 2))
    return [replace(templates[i % len(templates)], service=f"svc-{i}") for i in range(services)]


def as_columns(points: list[PoolPoint]) -> PoolColumns:
    return PoolColumns([p.ts.timestamp() for p in points], {f: [getattr(p, f) for p in points] for f in _POOL_FIELDS})


def columnar(inputs: list[DiagnosisInput]) -> list[DiagnosisInput]:
    """The same inputs as columns, as a caller reading many series at once passes them."""
    return [replace(i, total=as_columns(i.total), instances={k: as_columns(v) for k, v in i.instances.items()})
            for i in inputs]


def main(services: int = 1000, points: int = 60, rounds: int = 5) -> None:
    inputs = fleet_inputs(services, points)
    time_it(inputs, services, rounds, "")
    time_it(columnar(inputs), services, rounds, "_columns")


def time_it(inputs: list[DiagnosisInput], services: int, rounds: int, suffix: str) -> None:
    timings, cpu = [], []
    for _ in range(rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        diagnose_many(inputs)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    timings.sort()
    cpu.sort()
    if not suffix:
        print(f"diagnosis_services: {services}")
        print(f"diagnosis_points_per_service: {sum(len(i.total) for i in inputs) / len(inputs):.0f}")
    print(f"diagnosis_engine_ms_{services}{suffix}: {timings[len(timings) // 2] * 1000:.0f}")
    print(f"diagnosis_engine_best_ms_{services}{suffix}: {timings[0] * 1000:.0f}")
    # CPU time of this process: what the engine costs when the machine's 2 cores are shared.
    print(f"diagnosis_engine_cpu_ms_{services}{suffix}: {cpu[len(cpu) // 2] * 1000:.0f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
