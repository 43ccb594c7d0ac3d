"""Train several specs in one launch, the way ``specgrad train`` does under ``mpiexec`` (one start of the
interpreter and of MPI for many short runs: tests/test_distributed.py). Usage:

    [mpiexec -n N] python tests/mpi_train.py JOBS.json

JOBS.json is a list of ``{"spec": path, "set": [K=V, ...], "run_dir": path, "resume": false}``.
"""

import json
import sys

from specgrad.run.distributed import connect
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec


def main(path: str) -> None:
    comm = connect()
    with open(path, encoding="utf-8") as f:
        jobs = json.load(f)
    with comm.failing_together(lambda e: print(f"error (rank {comm.rank} of {comm.size}): {e}", file=sys.stderr)):
        for job in jobs:
            spec = load_spec(job["spec"], job.get("set", []))
            Trainer(spec, job["run_dir"], comm=comm).run(resume=job.get("resume", False))


if __name__ == "__main__":
    main(sys.argv[1])
