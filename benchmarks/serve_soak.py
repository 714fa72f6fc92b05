"""Soak test of `medtune serve`: mixed clients for a bounded time, the server's memory, threads and files watched.

Starts ``medtune serve`` as a subprocess on a free 127.0.0.1 port (nothing leaves the machine) and
runs four kinds of clients against it until ``--minutes`` are up:

    benign        non-streamed questions (the model answers)
    emergency     non-streamed emergencies (the guardrails' fixed reply, no model)
    streaming     streamed questions read to the end
    disconnect    streamed questions hung up on after the first event (the generation must stop)

Every ``--sample-every`` seconds it samples the server process (psutil): RSS, threads, open file
descriptors, and ``/health`` (busy workers, waiting). At the end it prints p50/p95 latency and the
status counts per kind, the samples over time, and checks the bounds: after ``--warmup`` seconds,
RSS may grow by at most ``--rss-bound`` MB (mean of the last quarter against the first minute after
warm-up), threads by ``--thread-bound`` and file descriptors by ``--fd-bound``; no 5xx other than
503, no lost request, every worker free within ``--idle-timeout`` seconds of the last client. Exit status 1 when a bound fails.

    python benchmarks/serve_soak.py [--model smollm2-135m-instruct] [--minutes 10] [--clients 2] [--kinds KIND ...]

RSS is sampled whole and as its anonymous part (``/proc/PID/smaps_rollup``: the heap; the rest is the
memory-mapped weights and libraries). ``--kinds`` runs only some kinds of client, to tell which
requests the memory follows.
"""

from __future__ import annotations

import argparse
import asyncio
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
import psutil

REPO = Path(__file__).resolve().parents[1]
BENIGN = ["What are common symptoms of the flu?", "How can I sleep better?", "What is the difference between a cold and allergies?",
          "How much water should an adult drink a day?", "What does a high blood pressure reading mean?"]
EMERGENCY = ["My husband collapsed and is not breathing, what do I do?",
             "My father suddenly has crushing chest pain spreading to his left arm and he is sweating."]
KINDS = ("benign", "emergency", "streaming", "disconnect")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


async def client(kind: str, i: int, url: str, max_tokens: int, deadline: float, results: list) -> None:
    async with httpx.AsyncClient(timeout=300) as http:
        n = 0
        while time.time() < deadline:
            n += 1
            text = EMERGENCY[(i + n) % len(EMERGENCY)] if kind == "emergency" else f"{BENIGN[(i + n) % len(BENIGN)]} ({i}.{n})"
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 0.7,
                    "stream": kind in ("streaming", "disconnect")}
            start = time.perf_counter()
            try:
                if body["stream"]:
                    async with http.stream("POST", url, json=body) as r:
                        status, done = r.status_code, False
                        async for line in r.aiter_lines():
                            if kind == "disconnect" and line.startswith("data:"):
                                break  # hang up after the first event
                            done = done or line == "data: [DONE]"
                        if status == 200 and kind == "streaming" and not done:
                            status = "lost:unfinished"
                else:
                    r = await http.post(url, json=body)
                    status = r.status_code
            except Exception as e:  # a transport error is a lost request
                status = f"lost:{type(e).__name__}"
            results.append({"kind": kind, "status": status, "seconds": time.perf_counter() - start, "at": time.time()})
            await asyncio.sleep(0.2)


def anon_mb(pid: int) -> float | None:
    """The process's anonymous (heap, not file-backed) resident memory in MB; None where /proc has no smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def sample(proc: psutil.Process, base: str, start: float, stop: threading.Event, every: float, samples: list) -> None:
    while not stop.is_set():
        try:
            health = httpx.get(f"{base}/health", timeout=30).json()
            with proc.oneshot():
                samples.append({"t": time.time() - start, "rss_mb": proc.memory_info().rss / 2**20, "anon_mb": anon_mb(proc.pid),
                                "threads": proc.num_threads(), "fds": proc.num_fds(), "busy": health["workers_busy"],
                                "waiting": health["waiting"]})
        except (httpx.HTTPError, psutil.Error):
            pass
        stop.wait(every)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=2, help="clients of each kind")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="the kinds of client to run (default: all)")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=180,
                    help="seconds before the baseline is taken (RSS climbs fastest in the first ~3 minutes, then slowly: "
                         "docs/reliability.md#soak)")
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--rss-bound", type=float, default=50, help="MB of RSS growth allowed after warm-up")
    ap.add_argument("--thread-bound", type=int, default=4)
    ap.add_argument("--fd-bound", type=int, default=8)
    ap.add_argument("--idle-timeout", type=float, default=30,
                    help="seconds the workers may take to be free after the last client (a hung-up stream stops at its next token)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MEDTUNE_API_KEY", None)
    sets = [f"serve.workers={args.workers}", f"serve.max_tokens={max(args.max_tokens, 16)}", "serve.queue_timeout=120"]
    cmd = [sys.executable, "-m", "medtune", "serve", "-m", args.model, "--port", str(port)] + [a for s in sets for a in ("--set", s)]
    log = open(REPO / "runs" / "serve_soak.log" if (REPO / "runs").is_dir() else os.devnull, "wb")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    while True:
        try:
            httpx.get(f"{base}/health", timeout=5)
            break
        except httpx.TransportError:
            if server.poll() is not None or time.time() - t0 > 600:
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
    print(f"server {args.model} ready in {time.time() - t0:.1f}s on {base} (pid {server.pid}); "
          f"{args.clients} client(s) of each kind for {args.minutes:g} min")

    proc, samples, results, stop = psutil.Process(server.pid), [], [], threading.Event()
    start = time.time()
    sampler = threading.Thread(target=sample, args=(proc, base, start, stop, args.sample_every, samples), daemon=True)
    sampler.start()
    deadline = start + args.minutes * 60

    async def run_all():
        url = f"{base}/v1/chat/completions"
        await asyncio.gather(*(client(k, i, url, args.max_tokens, deadline, results) for k in args.kinds for i in range(args.clients)))

    try:
        asyncio.run(run_all())
        idle, settled = wait_idle(base, args.idle_timeout)  # the last hung-up streams stop at their next token
        idle["seconds_to_idle"] = round(settled, 1)
        stop.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return report(args, results, samples, idle, time.time() - start)


def wait_idle(base: str, timeout: float) -> tuple[dict, float]:
    """``/health`` once every worker is free and nobody waits (or at ``timeout``), and the seconds that took."""
    t0 = time.time()
    while True:
        health = httpx.get(f"{base}/health", timeout=30).json()
        if (health["workers_busy"] == 0 and health["waiting"] == 0) or time.time() - t0 > timeout:
            return health, time.time() - t0
        time.sleep(0.5)


def report(args, results: list, samples: list, idle: dict, wall: float) -> int:
    figures: dict = {"minutes": args.minutes, "wall_s": round(wall, 1), "kinds": {}}
    print(f"\n{len(results)} requests in {wall:.0f}s")
    print(f"{'kind':11s} {'n':>5s} {'p50 s':>7s} {'p95 s':>7s}  statuses")
    for kind in args.kinds:
        rows = [r for r in results if r["kind"] == kind]
        ok = [r["seconds"] for r in rows if r["status"] == 200]
        statuses: dict = {}
        for r in rows:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        figures["kinds"][kind] = {"n": len(rows), "p50_s": round(pct(ok, 0.5), 3), "p95_s": round(pct(ok, 0.95), 3), "statuses": statuses}
        print(f"{kind:11s} {len(rows):5d} {pct(ok, 0.5):7.2f} {pct(ok, 0.95):7.2f}  {statuses}")

    print(f"\n{'t (s)':>6s} {'RSS MB':>8s} {'anon MB':>8s} {'threads':>8s} {'fds':>5s} {'busy':>5s} {'waiting':>8s}")
    step = max(1, len(samples) // 20)
    for s in samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else []):
        anon = f"{s['anon_mb']:8.1f}" if s["anon_mb"] is not None else f"{'-':>8s}"
        print(f"{s['t']:6.0f} {s['rss_mb']:8.1f} {anon} {s['threads']:8d} {s['fds']:5d} {s['busy']:5d} {s['waiting']:8d}")

    after = [s for s in samples if s["t"] >= args.warmup]
    first = [s for s in after if s["t"] < args.warmup + 60] or after[:1]
    last = after[-max(1, len(after) // 4):]

    def growth(key: str) -> float:
        return statistics.mean(s[key] for s in last) - statistics.mean(s[key] for s in first) if first and last else float("nan")

    half = [s for s in after if s["t"] >= (after[0]["t"] + after[-1]["t"]) / 2] if after else []
    slope = ((half[-1]["rss_mb"] - half[0]["rss_mb"]) / max(1e-9, half[-1]["t"] - half[0]["t"]) * 60) if len(half) > 1 else float("nan")
    print(f"RSS over the last half of the run: {slope:+.2f} MB/min (a leak keeps a positive slope; warm-up levels off)")
    figures["rss_slope_last_half_mb_per_min"] = round(slope, 3)
    if all(s["anon_mb"] is not None for s in samples):
        figures["anon_growth_mb"] = round(growth("anon_mb"), 1)
        print(f"of which anonymous (heap) memory: {growth('anon_mb'):+.1f} MB after warm-up")
    five = sum(1 for r in results if isinstance(r["status"], int) and r["status"] >= 500 and r["status"] != 503)
    lost = sum(1 for r in results if str(r["status"]).startswith("lost"))
    checks = [
        (f"RSS growth after warm-up {growth('rss_mb'):+.1f} MB <= {args.rss_bound:g} MB", growth("rss_mb") <= args.rss_bound),
        (f"thread growth {growth('threads'):+.1f} <= {args.thread_bound}", growth("threads") <= args.thread_bound),
        (f"open file descriptor growth {growth('fds'):+.1f} <= {args.fd_bound}", growth("fds") <= args.fd_bound),
        (f"5xx other than 503: {five}", five == 0),
        (f"lost requests: {lost}", lost == 0),
        (f"workers free after the last client: busy {idle['workers_busy']}, waiting {idle['waiting']} "
         f"({idle['seconds_to_idle']:g} s after it, at most {args.idle_timeout:g})", idle["workers_busy"] == 0 and idle["waiting"] == 0),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    figures.update(samples=samples, checks=[{"check": t, "pass": ok} for t, ok in checks], streams_cancelled=idle["streams_cancelled"],
                   rss_mb={"first": samples[0]["rss_mb"] if samples else None, "max": max((s["rss_mb"] for s in samples), default=None)})
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
