"""Policy-server benchmark: latency and throughput of ``invnet serve`` on loopback.

Starts ``invnet serve`` in a subprocess (127.0.0.1, a free port) and drives it from this process with
an async httpx client:

1. single 10-node states at concurrency 1 and 32 (requests/s, p50/p99 latency);
2. batches of 64 states (recommendations/s);
3. a reload under load: concurrency-32 traffic while the policy is swapped repeatedly; every
   request must succeed.

Every phase is bounded by a request count and a time limit. Targets (issue 6): p99 <= 10 ms for a
single state at concurrency 1, >= 1,000 recommendations/s at concurrency 32, zero errors.

    .venv/bin/python benchmarks/serving.py                      # network_10, trained bundle if found
    .venv/bin/python benchmarks/serving.py --policy base_stock --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-key-0123456789"


def find_bundle(scenario: str) -> str | None:
    """A trained policy bundle for ``scenario`` under the usual output folders, newest first."""
    found = []
    for base in ("runs", "outputs", "artifacts", "bundles", "models", "mlruns"):
        d = ROOT / base
        if not d.is_dir():
            continue
        for p in d.rglob("policy.json"):
            try:
                info = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if info.get("format") == "invnet-policy-bundle" and info.get("scenario") == scenario:
                found.append((p.stat().st_mtime, str(p.parent)))
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(scenario: str, policy: str, port: int, workers: int, coalesce: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INVNET_API_KEY": API_KEY, "INVNET_LOG_LEVEL": "warning"}
    env["INVNET_COALESCE"] = "true" if coalesce else "false"
    cmd = [str(Path(sys.executable).with_name("invnet")), "serve", "--scenario", scenario, "--policy", policy]
    cmd += ["--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise SystemExit(f"server exited: {out}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server not ready in time")


def summarize(name: str, lat: list[float], errors: int, seconds: float, per_request: int = 1) -> dict[str, Any]:
    a = np.asarray(lat) * 1000.0
    n = len(lat)
    return {
        "phase": name,
        "requests": n,
        "errors": errors,
        "seconds": round(seconds, 3),
        "requests_per_s": round(n / seconds, 1) if seconds > 0 else 0.0,
        "recommendations_per_s": round(n * per_request / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(float(np.percentile(a, 50)), 3) if n else None,
        "p99_ms": round(float(np.percentile(a, 99)), 3) if n else None,
        "max_ms": round(float(a.max()), 3) if n else None,
    }


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (one connection per worker).

    httpx's pooled AsyncClient costs several ms of client CPU per request at concurrency 32 on this
    machine and then measures itself rather than the server (``--client httpx`` shows it). Each
    answer is still checked: status 200 and a complete JSON body.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (x.partition(b":") for x in lines[1:]) if k.lower() == b"content-length")
        return status, await self.reader.readexactly(length)

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def drive(
    url: str, kind: str, path: str, body: bytes, concurrency: int, total: int, time_limit: float
) -> tuple[list[float], int, float]:
    """``total`` POSTs of ``body`` from ``concurrency`` workers (stops early at ``time_limit`` s)."""
    lat: list[float] = []
    errors = 0
    left = total
    stop = time.perf_counter() + time_limit
    host, port = url.removeprefix("http://").split(":")

    async def worker() -> None:
        nonlocal left, errors
        if kind == "raw":
            client: Any = RawClient(host, int(port))
        else:
            client = httpx.AsyncClient(base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=1))
        try:
            while left > 0 and time.perf_counter() < stop:
                left -= 1
                t0 = time.perf_counter()
                try:
                    if kind == "raw":
                        status, data = await client.post(path, body)
                    else:
                        r = await client.post(path, content=body, headers={"content-type": "application/json"})
                        status, data = r.status_code, r.content
                    ok = status == 200 and isinstance(json.loads(data), dict)
                except (OSError, ValueError, asyncio.IncompleteReadError, httpx.HTTPError):
                    ok = False
                lat.append(time.perf_counter() - t0)
                errors += not ok
        finally:
            await client.aclose()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, errors, time.perf_counter() - t0


async def run(args: argparse.Namespace, url: str, policy: str, alt_policy: str) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        example = (await client.get("/v1/example-state")).json()
        one = json.dumps(example).encode()
        batch = json.dumps({"states": [example] * 64}).encode()
        kind = args.client
        await drive(url, kind, "/v1/recommendations", one, 8, 300, 30)  # warm-up (connections, caches)
        results = []
        for conc in (1, 32):
            lat, err, sec = await drive(url, kind, "/v1/recommendations", one, conc, args.requests, args.time_limit)
            results.append(summarize(f"single, concurrency {conc}", lat, err, sec))
        for conc in (1, 4):
            lat, err, sec = await drive(
                url, kind, "/v1/recommendations:batch", batch, conc, max(20, args.requests // 32), args.time_limit
            )
            results.append(summarize(f"batch of 64, concurrency {conc}", lat, err, sec, per_request=64))

        # reload under load: traffic at concurrency 32 while the policy is swapped back and forth
        reload_lat: list[float] = []
        reload_err = 0

        async def reloader() -> None:
            nonlocal reload_err
            await asyncio.sleep(0.2)
            for i in range(args.reloads):
                spec = alt_policy if i % 2 == 0 else policy
                t0 = time.perf_counter()
                r = await client.post("/v1/policies/reload", json={"policy": spec}, headers={"X-API-Key": API_KEY})
                reload_lat.append(time.perf_counter() - t0)
                reload_err += r.status_code != 200
                await asyncio.sleep(0.1)

        load = drive(url, kind, "/v1/recommendations", one, 32, args.requests, args.time_limit)
        (lat, err, sec), _ = await asyncio.gather(load, reloader())
        r = summarize(f"single, concurrency 32, {args.reloads} reloads", lat, err, sec)
        r["reload_errors"] = reload_err
        r["reload_p50_ms"] = round(float(np.median(reload_lat)) * 1000, 1) if reload_lat else None
        results.append(r)
        final = (await client.get("/v1/policies")).json()["name"]
        results[-1]["policy_after_reloads"] = final
        return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="network_10")
    ap.add_argument(
        "--policy", default=None, help="SPEC to serve (default: a trained bundle if found, else base_stock)"
    )
    ap.add_argument("--alt-policy", default="order_up_to", help="SPEC swapped in during the reload phase")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=3000, help="requests per phase (bounded)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per phase at most")
    ap.add_argument("--reloads", type=int, default=6)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator (see RawClient)")
    ap.add_argument("--no-coalesce", action="store_true", help="serve with INVNET_COALESCE=false")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    policy = args.policy
    source = "given"
    if policy is None:
        bundle = find_bundle(args.scenario)
        policy, source = (bundle, "trained bundle") if bundle else ("base_stock", "baseline (no trained bundle found)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    proc = start_server(args.scenario, policy, port, args.workers, coalesce=not args.no_coalesce)
    try:
        wait_ready(url, proc)
        results = asyncio.run(run(args, url, policy, args.alt_policy))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    meta = {
        "scenario": args.scenario,
        "policy": policy,
        "policy_source": source,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "python": platform.python_version(),
        "client": ("asyncio keep-alive" if args.client == "raw" else f"httpx {httpx.__version__} async")
        + ", one connection per worker, separate process, same machine",
        "coalesce": not args.no_coalesce,
    }
    print(f"invnet serve benchmark: {meta}")
    head = f"{'phase':44s} {'requests':>8s} {'errors':>6s} {'req/s':>8s} {'recs/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s}"
    print(head)
    for r in results:
        print(
            f"{r['phase']:44s} {r['requests']:8d} {r['errors']:6d} {r['requests_per_s']:8.1f} "
            f"{r['recommendations_per_s']:8.1f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f}"
        )
    last = results[-1]
    print(f"reloads: {args.reloads}, failed reloads: {last['reload_errors']}, median reload {last['reload_p50_ms']} ms")
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
