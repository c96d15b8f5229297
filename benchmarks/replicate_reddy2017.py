"""Wall time of the Reddy et al. (2017) replication: ``--quick`` and (with ``--full``) the full
study (10 x 100, six sims, six tutors, RL). Prints JSON with the machine's load average.

    python benchmarks/replicate_reddy2017.py            # quick only
    python benchmarks/replicate_reddy2017.py --full     # quick, then the full study
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pedagogym.replicate.run import replicate


def timed(**kw) -> dict:
    out = Path(tempfile.mkdtemp(prefix="reddy2017_"))
    t0 = time.perf_counter()
    replicate("reddy2017", out, show_progress=False, **kw)
    return {"wall_s": round(time.perf_counter() - t0, 1), "out": str(out), "load_avg": os.getloadavg(),
            "cpus": os.cpu_count()}


if __name__ == "__main__":
    result = {"quick": timed(quick=True), "limit_quick_s": 180}
    if "--full" in sys.argv:
        result["full"] = timed()
        result["limit_full_s"] = 1800
    print(json.dumps(result, indent=2))
