"""Latency of exported policies, printed as JSON (a script, never a timed test).

    python benchmarks/export_latency.py                 # PPO-sized MLP on pedagogym/PrereqBKT-v0
    python benchmarks/export_latency.py --quick         # fewer repetitions

What it measures, on this machine, local only (HTTP on 127.0.0.1):
- export: building, verifying (32 simulated learners) and writing a bundle for an MLP actor of
  the PPO agent's default size (128, 128, tanh, observation normalisation);
- python_onnxruntime: one decision at batch 1 (single-thread session, inputs bound once and
  reused): the model call alone, and the whole ``recommend`` from an event log, without and with
  ``explain=True`` (occlusion over every feature group that differs from a new learner's: one
  batched model call) and with ``explain={"top_features": 0}`` (no attribution);
- node: the same with the Node client (``clients/node/bench/latency.js``);
- http: ``"explain": true`` requests are timed too;
- http: ``pedagogym serve`` under a bounded load: sequential requests on one keep-alive
  connection (latency), then a few concurrent connections (requests per second).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def quantiles(ns: list[int] | np.ndarray) -> dict:
    us = np.asarray(ns, np.float64) / 1000.0
    return {"p50_us": round(float(np.percentile(us, 50)), 2), "p90_us": round(float(np.percentile(us, 90)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2), "n": int(len(us))}


def export(out: Path, env_id: str, verify: int) -> tuple[dict, object]:
    from pedagogym.envs import make
    from pedagogym.export import ExportSource, MLPPolicy, export_bundle, random_mlp

    t0 = time.perf_counter()
    built = make(env_id)
    spec = random_mlp(len(built.feature_names), built.curriculum.n_items, hidden=(128, 128), seed=0)
    source = ExportSource("mlp", "ppo_sized_mlp", spec, MLPPolicy(spec), built)
    report = export_bundle(source, out, verify_learners=verify, overwrite=True)
    report["export_s_including_env_build"] = round(time.perf_counter() - t0, 3)
    return report, built


def sample_inputs(built, policy_bundle: Path, n_learners: int = 16, steps: int = 60):
    from pedagogym.export.record import event_logs, record_episodes
    from pedagogym.policies import POLICIES

    rec = record_episodes(built.env, built.params, POLICIES.get("mastery"), n_learners, steps, seed=1)
    active = rec.active
    obs, mask = rec.obs[:, :-1][active], rec.mask[:, :-1][active]
    logs = event_logs(rec, built.curriculum.item_ids)
    return obs, mask, max(logs, key=len)[:50]


def bench_python(bundle: Path, obs: np.ndarray, mask: np.ndarray, events: list, n: int) -> dict:
    from pedagogym.deploy import Recommender

    rec = Recommender(bundle)
    for i in range(2000):
        rec.decide(obs[i % len(obs)], mask[i % len(mask)])
    clock = time.perf_counter_ns
    times = np.empty(n, np.int64)
    for i in range(n):
        o, m = obs[i % len(obs)], mask[i % len(mask)]
        t0 = clock()
        rec.decide(o, m)
        times[i] = clock() - t0
    # the bare session call on bound buffers (what ``decide`` wraps)
    bare = np.empty(n, np.int64)
    run, binding = rec.session.run_with_iobinding, rec._binding
    for i in range(n):
        t0 = clock()
        run(binding)
        bare[i] = clock() - t0
    n_full = max(1, n // 10)

    def timed(**kw) -> np.ndarray:
        out = np.empty(n_full, np.int64)
        for i in range(n_full):
            t0 = clock()
            rec.recommend(events, **kw)
            out[i] = clock() - t0
        return out

    full = timed()
    explained = timed(explain=True)
    no_attribution = timed(explain={"top_features": 0})
    import onnxruntime

    n_groups = len(rec.recommend(events, explain={"top_features": 100})["explanation"]["attribution"]["groups"])
    return {"onnxruntime": onnxruntime.__version__, "decide_batch1": quantiles(times), "session_run_only": quantiles(bare),
            "recommend_from_events": {**quantiles(full), "events": len(events)},
            "recommend_explained": {**quantiles(explained), "attributed_groups": n_groups},
            "recommend_explained_without_attribution": quantiles(no_attribution)}


def bench_node(bundle: Path, obs: np.ndarray, mask: np.ndarray, events: list, n: int) -> dict:
    node = shutil.which("node")
    if node is None or not (ROOT / "clients/node/node_modules/onnxruntime-node").is_dir():
        return {"error": "node or clients/node/node_modules missing (run `npm ci` in clients/node)"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"obs": obs[:2000].tolist(), "mask": mask[:2000].astype(int).tolist(), "events": events}, f)
        path = f.name
    try:
        res = subprocess.run([node, "bench/latency.js", str(bundle), path, str(n)], cwd=ROOT / "clients/node",
                             capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(path)
    if res.returncode != 0:
        return {"error": res.stderr[-2000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_http(bundle: Path, events: list, n_requests: int, concurrency: int) -> dict:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pedagogym.export.cli", "serve", str(bundle), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    plain = json.dumps({"events": events}).encode()
    headers = {"content-type": "application/json"}
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                time.sleep(0.1)
        else:
            return {"error": "server did not start"}

        def client(k: int, out: list[int], body: bytes = plain) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(k):
                t0 = time.perf_counter_ns()
                conn.request("POST", "/recommend", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, resp.status
                out.append(time.perf_counter_ns() - t0)
            conn.close()

        client(200, [])  # warm up
        seq: list[int] = []
        t0 = time.perf_counter()
        client(n_requests, seq)
        seq_rps = n_requests / (time.perf_counter() - t0)
        per = [[] for _ in range(concurrency)]
        threads = [threading.Thread(target=client, args=(n_requests // concurrency, per[k])) for k in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conc_s = time.perf_counter() - t0
        conc = [x for p in per for x in p]
        explained: list[int] = []
        client(n_requests, explained, json.dumps({"events": events, "explain": True}).encode())
        return {"events_per_request": len(events), "sequential": {**quantiles(seq), "requests_per_s": round(seq_rps, 1)},
                "sequential_explained": quantiles(explained),
                "concurrent": {**quantiles(conc), "connections": concurrency,
                               "requests_per_s": round(len(conc) / conc_s, 1)}}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="pedagogym/PrereqBKT-v0")
    p.add_argument("--decisions", type=int, default=50_000)
    p.add_argument("--requests", type=int, default=2_000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--verify-learners", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="10x fewer decisions, 500 requests")
    args = p.parse_args()
    n, n_req = (args.decisions // 10, 500) if args.quick else (args.decisions, args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        report, built = export(bundle, args.env, args.verify_learners)
        obs, mask, events = sample_inputs(built, bundle)
        out = {
            "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
            "bundle": {k: report[k] for k in ("kind", "n_features", "n_items", "model_bytes", "opset")},
            "export": {"export_s": report["export_s"], "export_s_including_env_build": report["export_s_including_env_build"],
                       "verified_decisions": (report["verification"] or {}).get("decisions")},
            "python_onnxruntime": bench_python(bundle, obs, mask, events, n),
            "node": bench_node(bundle, obs, mask, events, n),
            "http": bench_http(bundle, events, n_req, args.concurrency),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
