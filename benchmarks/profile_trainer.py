"""cProfile of specgrad's trainer on one benchmark problem: where a training step's time goes.

    python benchmarks/profile_trainer.py digits            # the top 25 functions by own time
    python benchmarks/profile_trainer.py wide --sort cumulative --top 40

The problem is the same as in benchmarks/run.py (spec from benchmarks/specs, the reference's arrays for
digits and wide); one warm-up run, then the profiled run. Only ``Trainer.run`` is profiled (not loading the
spec or the data), with the steps repeated ``--rounds`` times for steadier figures.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from run import TASKS  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative, ...)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3, help="profiled runs of the whole training loop")
    args = parser.parse_args(argv)
    loops, _ = TASKS[args.task]()
    run = loops["specgrad"]()  # prepares (spec, data) and returns the run
    run()  # warm-up
    profiler = cProfile.Profile()
    steps = seconds = 0
    for _ in range(args.rounds):
        profiler.enable()
        n, s, _ = run()
        profiler.disable()
        steps, seconds = steps + n, seconds + s
    print(f"{args.task}: {steps} steps in {seconds:.3f} s under the profiler ({1e6 * seconds / steps:.0f} us a step)")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
