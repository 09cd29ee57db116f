"""``shiftnas train --nproc N``: the same command again, as N processes under ``torchrun``."""

from __future__ import annotations

import os
import subprocess
import sys


def arguments_without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch_under_torchrun(nproc: int, threads: int) -> int:
    """Run this command line (less ``--nproc``) as ``nproc`` processes on this machine with
    ``torchrun --standalone``, each with ``threads`` torch threads; their exit status."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "shiftnas",
        *arguments_without_nproc(sys.argv[1:]),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.run(command, env=env, check=False).returncode
