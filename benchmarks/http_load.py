"""Load test of `pedagogym serve`: C clients post /recommend for D seconds each; prints JSON
(requests/s, p50/p99 latency, errors by status, the server's resident memory before and after).

    python benchmarks/http_load.py [--bundle DIR] [--clients 4 8] [--seconds 30] [--events 20]

Default bundle: the Node client's committed fixture (tiny curriculum, small MLP). Each request
carries one learner's log of ``--events`` events (from the parity fixture), so the server
replays the log, featurizes it and runs the model, as in production.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "clients" / "node" / "test" / "fixtures"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _events(n: int) -> list[dict]:
    learners = json.loads((FIXTURES / "parity.json").read_text())["learners"]
    events = max((learner["events"] for learner in learners), key=len)
    return events[:n]


def run(url: str, clients: int, seconds: float, body: dict) -> dict:
    lat: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        mine, bad = [], {}
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = c.post("/recommend", json=body)
                    code = r.status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                mine.append(time.perf_counter() - t0)
                if code != 200:
                    bad[str(code)] = bad.get(str(code), 0) + 1
        with lock:
            lat.extend(mine)
            for k, v in bad.items():
                errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(lat), "req_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 2), "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 2),
            "errors": errors}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=str(FIXTURES / "bundle"))
    p.add_argument("--clients", type=int, nargs="+", default=[4, 8])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--events", type=int, default=20)
    p.add_argument("--server-pythonpath", default=str(ROOT),
                   help="PYTHONPATH of the server (default this checkout; another to compare versions)")
    args = p.parse_args()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": args.server_pythonpath}
    env.pop("PEDAGOGYM_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "pedagogym.cli", "serve", args.bundle, "--port", str(port)],
                              env=env, cwd=args.server_pythonpath, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"the server did not start: {server.stderr.read()[-2000:]}")
        events = _events(args.events)
        body = {"learner_id": events[0]["learner_id"], "events": events}
        rss0 = _rss_mb(server.pid)
        rows = []
        for c in args.clients:
            row = run(url, c, args.seconds, body)
            row["server_rss_mb_before"] = round(rss0, 1)
            row["server_rss_mb_after"] = round(_rss_mb(server.pid), 1)
            rows.append(row)
        print(json.dumps({"bundle": args.bundle, "events_per_request": len(body["events"]), "cpus": os.cpu_count(),
                          "runs": rows}, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
