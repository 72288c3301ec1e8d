"""``make fuzz``: a long seeded fuzz of the session cookie, in every mode, with its counts.

The inputs and checks are ``tests/fuzzing.py``'s (the test suite runs a short
run of the same). Inputs are split evenly across the modes and sent through
Flask's WSGI app directly (no test client). Exits 1 if any input caused an
error, had a forgery accepted, or reached the store with a malformed id.

    python bench/fuzz.py                     # 1,000,000 inputs, seed 1
    python bench/fuzz.py --count 10000 --seed 7 --modes memory,cookie
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzzing import Counts, fuzz
from tests.modes import MODES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = args.modes.split(",")
    total = Counts()
    started = time.monotonic()
    print(f"{'mode':<10}{'inputs':>10}{'errors':>8}{'forgeries':>11}{'store calls':>13}"
          f"{'real token':>12}{'seconds':>9}")
    for index, mode in enumerate(modes):
        share = args.count // len(modes) + (index < args.count % len(modes))
        begun = time.monotonic()
        with tempfile.TemporaryDirectory() as folder:
            counts = fuzz(mode, share, seed=args.seed + index, folder=Path(folder))
        total.add(counts)
        print(f"{mode:<10}{counts.inputs:>10}{counts.errors:>8}{counts.forgeries:>11}"
              f"{counts.malformed_store_calls:>13}{counts.real:>12}"
              f"{time.monotonic() - begun:>9.1f}", flush=True)
    print(f"{'total':<10}{total.inputs:>10}{total.errors:>8}{total.forgeries:>11}"
          f"{total.malformed_store_calls:>13}{total.real:>12}"
          f"{time.monotonic() - started:>9.1f}")
    print("(store calls: inputs with a cookie the app never issued that reached the store;"
          " real token: inputs where the real token was read among the noise)")
    for example in total.examples:
        print("  ", example)
    failed = total.errors or total.forgeries or total.malformed_store_calls
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
