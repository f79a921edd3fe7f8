#!/usr/bin/env python3
"""Fuzz the model loader: mutated real small models (flipped bytes, cuts,
deletions, insertions; protobuf fields removed or made inconsistent) must
either load or be refused with our ModelError. Anything else is a crash.

    python bench/fuzz_loader.py [--cases 10000]

Prints how many cases ran, how many loaded and were refused, and the crashes
(hypothesis stops at the first, shrunk to a minimal example).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases per kind of mutation (two kinds)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hypothesis import HealthCheck, given, seed, settings

    import fuzzing

    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    models = fuzzing.seeds(work / "seeds")
    scratch = work / "m.onnx"
    outcomes: collections.Counter = collections.Counter()
    crashes: list[str] = []
    cfg = settings(max_examples=args.cases, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck), print_blob=False)

    def run(kind, strategy):
        @seed(args.seed)
        @cfg
        @given(data=strategy)
        def prop(data):
            result = fuzzing.load(data, scratch)
            outcomes[(kind, result)] += 1

        try:
            prop()
        except Exception as exc:  # noqa: BLE001 - the crash is the finding
            crashes.append(f"{kind}: {type(exc).__name__}: {exc}"[:500])

    t0 = time.perf_counter()
    run("bytes", fuzzing.byte_mutation(models))
    run("protobuf", fuzzing.proto_mutation(models))
    total = sum(outcomes.values())
    print(f"{total} cases in {time.perf_counter() - t0:.0f} s")
    for (kind, result), n in sorted(outcomes.items()):
        print(f"  {kind:9s} {result:8s} {n}")
    print(f"crashes: {len(crashes)}")
    for c in crashes:
        print("  " + c)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
