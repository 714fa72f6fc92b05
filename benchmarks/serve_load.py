"""Load test of `medtune serve` on loopback: N concurrent clients, mixed benign and emergency prompts.

Starts the API in this process on a free 127.0.0.1 port (nothing leaves the machine), fires
``--clients`` concurrent clients that each send ``--requests`` chat completions (every third one an
emergency), and prints: requests sent / answered, how many got 429 (queue full) or 503 (waited too
long), any 5xx or lost request (a transport error or no answer), and p50/p95 latency per kind.
Bounded in count (clients x requests) and in time (``--deadline`` seconds, after which the
clients stop sending).

    python benchmarks/serve_load.py [--model RUN_DIR_OR_MODEL] [--clients 32] [--requests 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENIGN = [
    "What are common symptoms of the flu?",
    "How much water should an adult drink a day?",
    "What is the difference between a cold and allergies?",
    "How can I sleep better?",
]
EMERGENCY = [
    "My husband collapsed and is not breathing, what do I do?",
    "I think my child swallowed a bottle of pills and is very drowsy.",
]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def client(i: int, n: int, url: str, max_tokens: int, deadline: float, results: list) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=300) as http:
        for j in range(n):
            if time.time() > deadline:
                results.append({"kind": "skipped"})
                continue
            emergency = (i * n + j) % 3 == 2
            prompt = EMERGENCY[(i + j) % len(EMERGENCY)] if emergency else BENIGN[(i + j) % len(BENIGN)]
            start = time.perf_counter()
            try:
                r = await http.post(
                    url, json={"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
                )
                status, triage = r.status_code, (r.json().get("medtune") or {}).get("triage") if r.status_code == 200 else None
            except Exception as e:  # a transport error is a lost request
                status, triage = f"lost:{type(e).__name__}", None
            results.append(
                {"kind": "emergency" if emergency else "benign", "status": status, "triage": triage, "seconds": time.perf_counter() - start}
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--queue-timeout", type=float, default=120)
    ap.add_argument("--deadline", type=float, default=480, help="seconds after which clients stop sending")
    args = ap.parse_args()

    import uvicorn

    from medtune.apps.serve import create_app, load
    from medtune.core.config import RunConfig

    cfg = RunConfig()
    cfg.serve.workers, cfg.serve.queue_size, cfg.serve.queue_timeout = args.workers, args.queue_size, args.queue_timeout
    cfg.generation.max_new_tokens = args.max_tokens
    t0 = time.time()
    generator, run_cfg, name = load(args.model, cfg)
    app = create_app(generator, run_cfg, name)
    app.state.guardrails.triage("warm up the encoder")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", limit_concurrency=256))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    print(f"model {name} loaded in {time.time() - t0:.1f}s; serving on 127.0.0.1:{port} (workers {args.workers}, queue {args.queue_size})")

    results: list[dict] = []
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    start = time.time()

    async def run_all():
        await asyncio.gather(*(client(i, args.requests, url, args.max_tokens, start + args.deadline, results) for i in range(args.clients)))

    asyncio.run(run_all())
    wall = time.time() - start
    server.should_exit = True

    sent = [r for r in results if r["kind"] != "skipped"]
    expected = args.clients * args.requests
    by_status: dict = {}
    for r in sent:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    lost = expected - len(results) + sum(1 for r in sent if str(r["status"]).startswith("lost"))
    five = sum(1 for r in sent if isinstance(r["status"], int) and r["status"] >= 500 and r["status"] != 503)
    print(
        f"\n{args.clients} clients x {args.requests} requests = {expected}; sent {len(sent)} in {wall:.1f}s "
        f"({len(results) - len(sent)} skipped at the deadline)"
    )
    print(f"status counts: {dict(sorted(by_status.items(), key=str))}")
    print(
        f"answered 200: {by_status.get(200, 0)}   429 (queue full): {by_status.get(429, 0)}   503 (queue timeout): {by_status.get(503, 0)}"
    )
    print(f"other 5xx: {five}   lost: {lost}   no-5xx requests: {len(sent) - five - by_status.get(503, 0)}")
    wrong = [r for r in sent if r["status"] == 200 and (r["triage"] == "emergency") != (r["kind"] == "emergency")]
    print(
        f"emergency prompts triaged as such: {sum(1 for r in sent if r['kind'] == 'emergency' and r['triage'] == 'emergency')}"
        f"/{sum(1 for r in sent if r['kind'] == 'emergency' and r['status'] == 200)}; mis-triaged: {len(wrong)}"
    )
    for kind in ("benign", "emergency"):
        lat = [r["seconds"] for r in sent if r["kind"] == kind and r["status"] == 200]
        if lat:
            print(
                f"latency {kind:9s} (200s, n={len(lat)}): p50 {pct(lat, 0.5):.2f}s  p95 {pct(lat, 0.95):.2f}s  "
                f"mean {statistics.mean(lat):.2f}s"
            )
    rejected = [r["seconds"] for r in sent if r["status"] in (429, 503)]
    if rejected:
        print(f"latency of refusals (429/503, n={len(rejected)}): p50 {pct(rejected, 0.5):.3f}s  p95 {pct(rejected, 0.95):.3f}s")


if __name__ == "__main__":
    main()
