#!/usr/bin/env python3
"""Slow and hostile clients against a real mcp-server, on loopback only.

Measures `GET /health` latency (p50/p99 over sequential keep-alive requests
from one client, `--interval-ms` apart under load) in two phases:

1. quiet: nothing else runs;
2. under load: `--half-open` connections each holding half a request head
   (re-opened when the server closes them, as a slow-loris client would),
   plus `--hostile` clients posting an ~80 KB JSON body
   `{"name":"a","type":"b","capabilities":[1,1,...]}` to `POST /api/agents`
   with a valid API key, in a loop.

By default it starts the server itself (`--server PATH`) on a fresh SQLite
database in a temporary directory, reads the first-start admin API key from
its stderr and raises the api rate limit so the hostile bodies reach the
validator instead of being answered 429. With `--url` and `--api-key` it
uses a server that is already running.

Half-open connections come from 127.0.0.10 upwards (Linux answers on all of
127.0.0.0/8), 125 per address, so they stay under the default
MCP_MAX_CONNECTIONS_PER_IP of 256; the probe and the hostile clients use
addresses of their own. Every loop is bounded: the load stops when the probe
is done, or after `--max-seconds`.

Usage: benches/load/run.sh (raises `ulimit -n`, builds nothing) or
    python3 benches/load/slow_clients.py --server target/release/mcp-server
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HALF_HEAD = b"GET /health HTTP/1.1\r\nhost: %s\r\nx-slow: "
PER_ADDRESS = 125


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_server(binary, workdir, extra_env):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": "sqlite://" + os.path.join(workdir, "mcp.db"),
        "MCP_BIND": "127.0.0.1:0",
        "MCP_LOG_FORMAT": "json",
        "MCP_LOG": "warn,mcp_server=info",
        # The hostile clients must reach the validator, not the rate limit.
        "MCP_RATE_LIMIT_API": "100000000/1s",
    }
    env.update(extra_env)
    child = subprocess.Popen(
        [binary],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = key = None
    deadline = time.monotonic() + 60
    while (address is None or key is None) and time.monotonic() < deadline:
        line = child.stderr.readline()
        if not line:
            break
        match = re.search(r"X-API-Key: ([^']+)'", line)
        if match:
            key = match.group(1)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        fields = record.get("fields", {})
        if fields.get("message") == "listening":
            address = fields["address"]
    if address is None or key is None:
        child.kill()
        sys.exit("the server did not start (or printed no first-start key)")
    # Keep draining stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in child.stderr], daemon=True).start()
    host, port = address.rsplit(":", 1)
    return child, (host, int(port)), key


def read_response(sock, buffer):
    """Reads one response with a Content-Length; returns (status, rest)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return status, rest[length:]


def probe(server, count, interval=0.0):
    """Sequential keep-alive GET /health from 127.0.0.2, `interval` seconds
    apart (not counted); latencies in ms."""
    host = "%s:%d" % server
    request = ("GET /health HTTP/1.1\r\nhost: %s\r\n\r\n" % host).encode()
    latencies, errors = [], 0
    sock, buffer = None, b""
    for _ in range(count):
        try:
            if sock is None:
                sock = socket.create_connection(server, source_address=("127.0.0.2", 0))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffer = b""
            started = time.perf_counter()
            sock.sendall(request)
            status, buffer = read_response(sock, buffer)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors += 1
            if interval:
                time.sleep(interval)
        except OSError:
            errors += 1
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return latencies, errors


def summary(name, latencies, errors):
    latencies = sorted(latencies)
    if not latencies:
        return "%s: no successful requests (%d errors)" % (name, errors)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return "%s: n=%d errors=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms" % (
        name, len(latencies), errors, q[49], q[89], q[98], latencies[-1])


async def half_open(server, index, stop, stats):
    local = "127.0.0.%d" % (10 + index // PER_ADDRESS)
    head = HALF_HEAD % ("%s:%d" % server).encode()
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                server[0], server[1], local_addr=(local, 0))
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["opened"] += 1
        try:
            writer.write(head)
            await writer.drain()
            # Held until the server gives up on us (or the run ends).
            done = asyncio.ensure_future(reader.read(65536))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if done.done():
                stats["closed_by_server"] += 1
            for task in (done, stopped):
                task.cancel()
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            writer.close()


async def hostile(server, index, key, stop, stats):
    host = "%s:%d" % server
    items = ",".join(["1"] * 40000)
    body = ('{"name":"a","type":"b","capabilities":[%s]}' % items).encode()
    request = (
        "POST /api/agents HTTP/1.1\r\nhost: %s\r\nx-api-key: %s\r\n"
        "content-type: application/json\r\ncontent-length: %d\r\n\r\n" % (host, key, len(body))
    ).encode() + body
    local = "127.0.0.%d" % (200 + index)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                server[0], server[1], local_addr=(local, 0))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            while not stop.is_set():
                started = time.perf_counter()
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ")[1])
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(match.group(1)) if match else 0)
                stats["hostile_ms"].append((time.perf_counter() - started) * 1000)
                stats["status_%d" % status] = stats.get("status_%d" % status, 0) + 1
                if re.search(rb"(?i)connection:\s*close", head):
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats["hostile_errors"] += 1
        finally:
            writer.close()


def load(server, key, half, hostiles, ready, done, max_seconds, results):
    async def main():
        stop = asyncio.Event()
        stats = {"opened": 0, "closed_by_server": 0, "connect_errors": 0,
                 "hostile_errors": 0, "hostile_ms": []}
        tasks = [asyncio.ensure_future(half_open(server, i, stop, stats)) for i in range(half)]
        tasks += [asyncio.ensure_future(hostile(server, i, key, stop, stats))
                  for i in range(hostiles)]
        # Let the connections open and the first hostile bodies land.
        deadline = time.monotonic() + 30
        while stats["opened"] < half and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        ready.set()
        end = time.monotonic() + max_seconds
        while not done.is_set() and time.monotonic() < end:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait(tasks, timeout=5)
        hostile_ms = sorted(stats.pop("hostile_ms"))
        if hostile_ms:
            stats["hostile_p50_ms"] = round(hostile_ms[len(hostile_ms) // 2], 1)
            stats["hostile_max_ms"] = round(hostile_ms[-1], 1)
        stats["hostile_requests"] = len(hostile_ms)
        results.put(stats)

    asyncio.run(main())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="target/release/mcp-server",
                        help="the mcp-server binary to start")
    parser.add_argument("--url", help="use a running server at http://127.0.0.1:PORT instead")
    parser.add_argument("--api-key", help="API key for --url")
    parser.add_argument("--half-open", type=int, default=1000)
    parser.add_argument("--hostile", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--interval-ms", type=float, default=5,
                        help="pause between probe requests under load, so the run spans "
                             "several header timeouts and hostile bodies")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the started server (repeatable)")
    args = parser.parse_args()

    limit = raise_fd_limit(args.half_open + args.hostile + 256)
    if limit < args.half_open + 64:
        sys.exit("open-file limit %d is too low; raise ulimit -n" % limit)

    child = workdir = None
    if args.url:
        match = re.match(r"http://(127\.0\.0\.1|localhost):(\d+)/?$", args.url)
        if not match or not args.api_key:
            sys.exit("--url must be http://127.0.0.1:PORT (loopback only) with --api-key")
        server, key = ("127.0.0.1", int(match.group(2))), args.api_key
    else:
        workdir = tempfile.mkdtemp(prefix="mcp-load-")
        extra = dict(item.split("=", 1) for item in args.env)
        child, server, key = start_server(os.path.abspath(args.server), workdir, extra)
    try:
        print("server %s:%d, %d half-open, %d hostile, %d probe requests" % (
            server[0], server[1], args.half_open, args.hostile, args.requests))
        probe(server, 200)  # warm-up
        print(summary("quiet     ", *probe(server, args.requests)))

        ready, done = multiprocessing.Event(), multiprocessing.Event()
        results = multiprocessing.Queue()
        worker = multiprocessing.Process(target=load, args=(
            server, key, args.half_open, args.hostile, ready, done, args.max_seconds, results))
        worker.start()
        if not ready.wait(60):
            print("the load did not get going within 60 s")
        started = time.monotonic()
        line = summary("under load", *probe(server, args.requests, args.interval_ms / 1000))
        elapsed = time.monotonic() - started
        done.set()
        stats = results.get(timeout=60)
        worker.join(10)
        print(line + " (%.1f s)" % elapsed)
        print("load: " + json.dumps(stats, sort_keys=True))
        if child is not None and child.poll() is not None:
            print("the server exited with %s" % child.returncode)
    finally:
        if child is not None:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
