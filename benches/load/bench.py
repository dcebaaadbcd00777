#!/usr/bin/env python3
"""The server against its ceilings, in one run, on loopback.

Starts, all at once, each pinned to the server's core:

1. `mcp-server` on PostgreSQL with in-process rate limits (`pg`);
2. the same with its rate limits in Redis (`pg+redis`);
3. `bare_axum`: the same REST routes with no layers (the REST ceiling);
4. `bare_rmcp`: rmcp's Streamable HTTP service with the same `whoami`
   tool and nothing in front (the MCP ceiling);

then, scenario by scenario, checks its status on each target and drives
each target in turn with wrk for `--duration` seconds (a target and its
ceiling seconds apart, so a shared machine's drift moves both alike), the
server pinned to one core (`--server-cpu`) and
wrk to the other (`--load-cpu`), PostgreSQL kept off the server's core, and
prints one table: scenario, target, requests/s, p50, p99, the server's CPU
(100% = one core), PostgreSQL's and Redis' CPU, non-2xx answers and the ratio to the
ceiling. Then resident memory, idle and with `--idle` open keep-alive
connections.

The rate limits run on every request but are set high enough never to
refuse (a refusal would be a 429, and this measures the path that serves);
logs are at `warn` (the per-request access line is `info`).

Usage: benches/load/bench.sh (builds the release binaries first), or
    python3 benches/load/bench.py --duration 5 --only health,me_jwt
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RELEASE = os.path.join(ROOT, "target", "release")
ORIGIN = "http://app.example.com"
PASSWORD = "bench-password-1234"
JWT_SECRET = "bench-secret-bench-secret-bench-secret-0123"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# `--env NAME=VALUE` settings for mcp-server, over the ones below.
EXTRA_ENV = {}

# name -> (ceiling, what it does)
SCENARIOS = [
    ("health", "axum", "GET /health"),
    ("me_jwt", "axum", "GET /api/auth/me, JWT"),
    ("me_key", "axum", "GET /api/auth/me, API key"),
    ("agents_post", "axum", "POST /api/agents (a row inserted), JWT"),
    ("preflight", "axum", "OPTIONS /api/agents, CORS preflight"),
    ("mcp_call", "rmcp", "tools/call whoami, 2026-07-28 stateless"),
    ("mcp_list", "rmcp", "tools/list, 2026-07-28 stateless"),
    ("mcp_session", "rmcp", "initialize+initialized+call+close, 2025-11-25"),
    ("mcp_call_seq", "rmcp", "tools/call whoami, one client, sequential"),
]


def stateless(method, params):
    params = dict(params)
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def scenario_request(name, credentials):
    """(method, path, headers, body) of one request of `name`; `credentials`
    is {} for a ceiling."""
    jwt = {"authorization": "Bearer " + credentials["jwt"]} if credentials else {}
    key = {"x-api-key": credentials["key"]} if credentials else {}
    mcp = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
    }
    if name == "health":
        return "GET", "/health", {}, None
    if name == "me_jwt":
        return "GET", "/api/auth/me", jwt, None
    if name == "me_key":
        return "GET", "/api/auth/me", key, None
    if name == "agents_post":
        body = {"name": "agent-0", "type": "bench", "capabilities": ["read"]}
        return "POST", "/api/agents", dict(jwt, **{"content-type": "application/json"}), json.dumps(body)
    if name == "preflight":
        return "OPTIONS", "/api/agents", {
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        }, None
    if name in ("mcp_call", "mcp_call_seq"):
        body = stateless("tools/call", {"name": "whoami", "arguments": {}})
        headers = dict(mcp, **key, **{"mcp-method": "tools/call", "mcp-name": "whoami"})
        return "POST", "/mcp", headers, json.dumps(body)
    if name == "mcp_list":
        body = stateless("tools/list", {})
        return "POST", "/mcp", dict(mcp, **key, **{"mcp-method": "tools/list"}), json.dumps(body)
    if name == "mcp_session":
        return "POST", "/mcp", dict(mcp, **key), None
    raise KeyError(name)


def lua_string(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(name, credentials):
    method, path, headers, body = scenario_request(name, credentials)
    lines = ["wrk.method = %s" % lua_string(method), "wrk.path = %s" % lua_string(path)]
    for header, value in headers.items():
        lines.append("wrk.headers[%s] = %s" % (lua_string(header), lua_string(value)))
    if name == "agents_post":
        # Agent names need not be unique, but vary them anyway so the rows
        # differ; the counter is per wrk thread.
        lines.append("local n = 0")
        lines.append("request = function()")
        lines.append("  n = n + 1")
        lines.append(
            '  return wrk.format(nil, nil, nil, \'{"name":"agent-\' .. n .. \'",'
            '"type":"bench","capabilities":["read"]}\')'
        )
        lines.append("end")
    elif name == "mcp_session":
        lines.append(SESSION_LUA)
    elif body is not None:
        lines.append("wrk.body = %s" % lua_string(body))
    return "\n".join(lines) + "\n"


# One session per four requests: initialize, initialized, tools/call, then
# DELETE; the session id comes from the initialize answer. Any status
# other than the expected one is counted as `bad` and printed at the end.
SESSION_LUA = r"""
local step, session, bad = 0, nil, 0
local init = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
local initialized = '{"jsonrpc":"2.0","method":"notifications/initialized"}'
local call = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
wrk.headers["mcp-protocol-version"] = "2025-11-25"
request = function()
  if step == 0 or session == nil then
    step = 0
    wrk.headers["mcp-session-id"] = nil
    return wrk.format("POST", nil, nil, init)
  end
  wrk.headers["mcp-session-id"] = session
  if step == 1 then return wrk.format("POST", nil, nil, initialized) end
  if step == 2 then return wrk.format("POST", nil, nil, call) end
  return wrk.format("DELETE", nil, nil, nil)
end
response = function(status, headers, body)
  local want = ({[0] = 200, [1] = 202, [2] = 200, [3] = 204})[step]
  if step == 0 then session = headers["mcp-session-id"] or headers["Mcp-Session-Id"] end
  if status ~= want and not (step == 3 and (status == 200 or status == 202)) then bad = bad + 1 end
  step = (step + 1) % 4
end
done = function(summary, latency, requests)
  io.write(string.format("session-steps-unexpected: %d\n", bad))
end
"""


def http(address, method, path, headers, body=None, timeout=10):
    """One request; (status, headers, body text)."""
    url = "http://%s:%d%s" % (address[0], address[1], path)
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def cpu_ticks(pids):
    """utime + stime of each pid still there."""
    ticks = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[pid] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks


def cpu_percent(before, after, elapsed):
    """CPU of the processes alive at both ends, in % of one core."""
    used = sum(after[pid] - before[pid] for pid in before if pid in after)
    return used / CLK_TCK / elapsed * 100


def postgres_pids():
    return pids_named("postgres")


def pids_named(name):
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class PostgresOffServerCore:
    """Keeps PostgreSQL off the server's core while the run lasts (its
    backends fork from the postmaster and inherit the mask), and gives it
    back its own mask at the end. On a two-core machine PostgreSQL would
    otherwise take its CPU from the server it is measured behind, whenever
    the scheduler puts a backend there: then the server's column reads
    below 100% and its rate drops for want of a core, not for its own
    work. Needs the right to set another user's affinity (root); without
    it the run goes on and says so."""

    def __init__(self, server_cpu):
        self.server_cpu = server_cpu
        self.saved = {}

    def __enter__(self):
        for pid in postgres_pids():
            try:
                mask = os.sched_getaffinity(pid)
                others = mask - {self.server_cpu}
                if others and others != mask:
                    os.sched_setaffinity(pid, others)
                    self.saved[pid] = mask
            except OSError as error:
                print("!! PostgreSQL (pid %d) stays where it is: %s" % (pid, error), flush=True)
                break
        return self

    def __exit__(self, *_):
        for pid, mask in self.saved.items():
            try:
                os.sched_setaffinity(pid, mask)
            except OSError:
                pass  # the process has gone


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def parse_duration_ms(text):
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(args, address, name, credentials, connections):
    script = wrk_script(name, credentials)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    command = [
        "taskset", "-c", str(args.load_cpu), "wrk",
        # The session script keeps its state per wrk thread: one connection each.
        "-t%d" % (connections if name == "mcp_session" else 1), "-c%d" % connections,
        "-d%ds" % args.duration, "--latency", "--timeout", "5s", "-s", path,
        "http://%s:%d" % address,
    ]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Requests/sec" not in out or "Latency Distribution" not in out:
        sys.exit("%s: wrk printed no figures:\n%s" % (name, out))
    distribution = out.split("Latency Distribution", 1)[1]
    p50 = parse_duration_ms(re.search(r"\b50%\s+(\S+)", distribution).group(1))
    p99 = parse_duration_ms(re.search(r"\b99%\s+(\S+)", distribution).group(1))
    bad = 0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if match:
        bad += int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        bad += sum(int(g) for g in match.groups())
    match = re.search(r"session-steps-unexpected: (\d+)", out)
    if match:
        bad += int(match.group(1))
    if name == "mcp_session":
        rps /= 4  # sessions per second
    return rps, p50, p99, bad, out


class Target:
    """A started process and the address it listens on."""

    def __init__(self, label, command, env, cpu):
        self.label = label
        self.log = tempfile.TemporaryFile("w+")
        self.child = subprocess.Popen(
            ["taskset", "-c", str(cpu)] + command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.address = None
        self.first_key = None
        self.lines = []
        found = threading.Event()

        def read(stream):
            for line in stream:
                self.lines.append(line)
                match = re.search(r"X-API-Key: ([^']+)'", line)
                if match:
                    self.first_key = match.group(1)
                match = re.search(r"listening on (\S+)", line)
                if match:
                    self.address = match.group(1)
                try:
                    fields = json.loads(line).get("fields", {})
                    if fields.get("message") == "listening":
                        self.address = fields["address"]
                except ValueError:
                    pass
                if self.address:
                    found.set()

        for stream in (self.child.stdout, self.child.stderr):
            threading.Thread(target=read, args=(stream,), daemon=True).start()
        if not found.wait(60) or self.child.poll() is not None:
            self.stop()
            sys.exit("%s did not start:\n%s" % (label, "".join(self.lines[-20:])))
        host, port = self.address.rsplit(":", 1)
        self.address = (host, int(port))
        self.pid = self.child.pid
        # taskset execs the program: the pid is the server's own.

    def stop(self):
        if self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(15)
            except subprocess.TimeoutExpired:
                self.child.kill()


def psql(*sql):
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-q"]
    for statement in sql:
        command += ["-c", statement]
    subprocess.run(command, check=True, capture_output=True)


def server_env(database, redis_prefix):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/%s" % database,
        "MCP_BIND": "127.0.0.1:0",
        "MCP_LOG_FORMAT": "json",
        "MCP_LOG": "warn,mcp_server=info",
        "MCP_JWT_SECRET": JWT_SECRET,
        "MCP_JWT_TTL": "2h",
        "MCP_CORS_ORIGIN": ORIGIN,
        # Never refuse: this measures the path that serves. 10,000 per 10 ms
        # (a million a second per caller) keeps the headers' numbers in the
        # range a real quota has (at most 10,000, written from a table).
        "MCP_RATE_LIMIT_API": "10000/10ms",
        # Every request with a credential reserves a unit of this policy
        # until it is answered (so at most the quota of guesses from one
        # address are in flight): one load generator is one address.
        "MCP_RATE_LIMIT_AUTH_FAILURES": "100000/60s",
        "MCP_MAX_CONNECTIONS": "20000",
        "MCP_MAX_CONNECTIONS_PER_IP": "20000",
    }
    if redis_prefix:
        env["REDIS_URL"] = "redis://127.0.0.1:6379"
        env["MCP_RATE_LIMIT_PREFIX"] = redis_prefix
    env.update(EXTRA_ENV)
    return env


def credentials_for(target):
    """A user with a JWT and an API key of their own, made through the API
    with the first-start admin key."""
    admin = {"x-api-key": target.first_key, "content-type": "application/json"}
    user = {"email": "bench@example.com", "password": PASSWORD, "name": "bench", "role": "user"}
    status, _, body = http(target.address, "POST", "/api/users", admin, json.dumps(user))
    if status not in (201, 409):
        sys.exit("creating the bench user: %d %s" % (status, body))
    status, _, body = http(
        target.address, "POST", "/api/auth/login", {"content-type": "application/json"},
        json.dumps({"email": user["email"], "password": PASSWORD}),
    )
    if status != 200:
        sys.exit("login: %d %s" % (status, body))
    jwt = json.loads(body)["accessToken"]
    headers = {"authorization": "Bearer " + jwt, "content-type": "application/json"}
    status, _, body = http(target.address, "POST", "/api/keys", headers, json.dumps({"name": "bench"}))
    if status != 201:
        sys.exit("creating a key: %d %s" % (status, body))
    return {"jwt": jwt, "key": json.loads(body)["key"]}


EXPECTED = {"agents_post": 201, "preflight": (200, 204)}


def check(address, name, credentials):
    """One request of the scenario; exits on an unexpected status."""
    if name == "mcp_session":
        _, _, headers, _ = scenario_request(name, credentials)
        headers = dict(headers, **{"mcp-protocol-version": "2025-11-25"})
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}}
        status, answer, text = http(address, "POST", "/mcp", headers, json.dumps(init))
        session = {k.lower(): v for k, v in answer.items()}.get("mcp-session-id")
        steps = [(status, 200, text)]
        headers["mcp-session-id"] = session or ""
        status, _, text = http(address, "POST", "/mcp", headers,
                               json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        steps.append((status, 202, text))
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
        status, _, text = http(address, "POST", "/mcp", headers, json.dumps(call))
        steps.append((status, 200, text))
        status, _, text = http(address, "DELETE", "/mcp", headers)
        steps.append((status, (200, 202, 204), text))
        for status, want, text in steps:
            if status not in (want if isinstance(want, tuple) else (want,)):
                sys.exit("%s: %d (wanted %s): %s" % (name, status, want, text[:300]))
        return
    method, path, headers, body = scenario_request(name, credentials)
    status, _, text = http(address, method, path, headers, body)
    want = EXPECTED.get(name, 200)
    if status not in (want if isinstance(want, tuple) else (want,)):
        sys.exit("%s: %d (wanted %s): %s" % (name, status, want, text[:300]))
    if name.startswith("mcp_") and '"result"' not in text:
        sys.exit("%s: no JSON-RPC result: %s" % (name, text[:300]))


def hold_idle(address, count):
    """Opens `count` keep-alive connections, each after one answered
    GET /health; returns the sockets (kept open by the caller)."""
    sockets = []
    request = ("GET /health HTTP/1.1\r\nhost: %s:%d\r\n\r\n" % address).encode()
    for _ in range(count):
        sock = socket.create_connection(address)
        sock.sendall(request)
        sockets.append(sock)
    for sock in sockets:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed a held connection")
            data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise ConnectionError("held connection answered %r" % data[:40])
    return sockets


def measure(args, target, names, credentials):
    rows = []
    for name in names:
        check(target.address, name, credentials)
    for name in names:
        connections = 1 if name == "mcp_call_seq" else args.connections
        # Backends are forked per connection: list them each time.
        pg, redis = postgres_pids(), pids_named("redis-server")
        before, pg_before, redis_before = cpu_ticks([target.pid]), cpu_ticks(pg), cpu_ticks(redis)
        started = time.monotonic()
        rps, p50, p99, bad, out = run_wrk(args, target.address, name, credentials, connections)
        elapsed = time.monotonic() - started
        cpu = cpu_percent(before, cpu_ticks([target.pid]), elapsed)
        pg_cpu = cpu_percent(pg_before, cpu_ticks(pg), elapsed)
        redis_cpu = cpu_percent(redis_before, cpu_ticks(redis), elapsed)
        rows.append({"scenario": name, "target": target.label, "rps": rps, "p50": p50,
                     "p99": p99, "cpu": cpu, "pg_cpu": pg_cpu, "redis_cpu": redis_cpu, "bad": bad,
                     "rss": rss_mib(target.pid)})
        print("  %-13s %-9s %9.0f/s p50 %7.2f ms p99 %7.2f ms cpu %4.0f%% pg %4.0f%% redis %4.0f%% "
              "non-2xx %d rss %.0f MiB"
              % (name, target.label, rps, p50, p99, cpu, pg_cpu, redis_cpu, bad, rows[-1]["rss"]),
              flush=True)
        if args.verbose:
            print(out)
    return rows


def one_round(args, names, targets, database, idle):
    """Every target started at once (all pinned to the server's core, idle
    but for the one driven), then each scenario run on each target in
    turn: a target and its ceiling are measured seconds apart, not minutes,
    so the drift of a shared machine moves both alike. Returns the rows,
    and the memory when `idle`."""
    rows, memory, started = [], [], []
    try:
        for label in ("pg", "pg+redis"):
            if label not in targets:
                continue
            own = database + ("_redis" if label == "pg+redis" else "")
            psql("DROP DATABASE IF EXISTS %s" % own, "CREATE DATABASE %s" % own)
            redis = "bench-%d:" % os.getpid() if label == "pg+redis" else None
            target = Target(label, [args.server], server_env(own, redis), args.server_cpu)
            target.database = own
            started.append((target, "mcp-server", credentials_for(target)))
        for label, binary, kind in (("axum", "bare_axum", "axum"), ("rmcp", "bare_rmcp", "rmcp")):
            if label not in targets:
                continue
            ceiling = [n for n in names if dict((s, c) for s, c, _ in SCENARIOS)[n] == kind]
            if not ceiling and not (kind == "axum" and args.idle):
                continue
            target = Target(label, [os.path.join(RELEASE, binary), "127.0.0.1:0"],
                            {"PATH": os.environ["PATH"]}, args.server_cpu)
            target.database = None
            started.append((target, kind, {}))
        for target, _, _ in started:
            print("%s on %s:%d" % (target.label, *target.address), flush=True)
        remembered = [t for t, _, _ in started if t.label in ("pg", "axum")]
        for target in remembered:
            memory.append(idle and hold_and_measure(args, target, "fresh"))
        kinds = dict((s, c) for s, c, _ in SCENARIOS)
        # Each ceiling right after the target it is the ceiling of.
        order = sorted(started, key=lambda t: t[0].label == "pg+redis")
        for name in names:
            for target, kind, credentials in order:
                if kind in ("axum", "rmcp") and kinds[name] != kind:
                    continue
                rows += measure(args, target, [name], credentials)
        for target in remembered:
            memory.append(idle and hold_and_measure(args, target, "after the load"))
    finally:
        for target, _, _ in started:
            target.stop()
            if target.database:
                psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % target.database)
    return rows, memory


def main():
    # A SIGTERM (or Ctrl-C) still stops the started servers and drops the
    # database: the `finally` blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario (10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--load-cpu", type=int, default=0)
    parser.add_argument("--idle", type=int, default=10000, help="idle connections held (10000)")
    parser.add_argument("--only", help="comma-separated scenarios")
    parser.add_argument("--targets", default="pg,pg+redis,axum,rmcp", help="which targets to start")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every target this many times, one after the other; the table "
                        "shows each figure's median over the rounds, and each ratio is the "
                        "median of the rounds' own ratios (a shared machine drifts between "
                        "targets: adjacent runs pair better than distant ones)")
    parser.add_argument("--server", default=os.path.join(RELEASE, "mcp-server"),
                        help="the mcp-server binary (default: target/release/mcp-server)")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    parser.add_argument("--serve", metavar="TARGET", help="only start TARGET (pg, pg+redis), print "
                        "its address, pid and credentials as JSON, and keep it up until stdin closes "
                        "(for a profiler)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for mcp-server (repeatable), such as MCP_AUDIT_SINK=off")
    args = parser.parse_args()
    for setting in args.env:
        name, _, value = setting.partition("=")
        EXTRA_ENV[name] = value
    for tool in ("wrk", "taskset", "psql"):
        if shutil.which(tool) is None:
            sys.exit("needs %s (apt-get install wrk util-linux postgresql-client)" % tool)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.idle * 2 + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    names = [n for n, _, _ in SCENARIOS]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    targets = args.targets.split(",")
    rows, memory = [], []
    database = "mcp_bench_%d" % os.getpid()
    if args.serve:
        psql("DROP DATABASE IF EXISTS %s" % database, "CREATE DATABASE %s" % database)
        redis = "bench-%d:" % os.getpid() if args.serve == "pg+redis" else None
        target = Target(args.serve, [args.server],
                        server_env(database, redis), args.server_cpu)
        try:
            credentials = credentials_for(target)
            print(json.dumps({"address": "%s:%d" % target.address, "pid": target.pid,
                              **credentials}), flush=True)
            for name in names:
                print(wrk_script(name, credentials), file=open("/tmp/bench-%s.lua" % name, "w"))
            sys.stdin.read()
        finally:
            target.stop()
            psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % database)
        return

    with PostgresOffServerCore(args.server_cpu):
        for round_ in range(args.rounds):
            if args.rounds > 1:
                print("== round %d of %d" % (round_ + 1, args.rounds), flush=True)
            got, held = one_round(args, names, targets, database, round_ == 0)
            for row in got:
                row["round"] = round_
            rows += got
            memory += held

    print_table(rows, memory)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "memory": memory}, f, indent=1)


def hold_and_measure(args, target, when):
    """Resident memory idle, then with `--idle` kept-alive connections
    open (each answered one GET /health), then after they closed."""
    if not args.idle:
        return None
    idle = rss_mib(target.pid)
    sockets = hold_idle(target.address, args.idle)
    time.sleep(1)
    held = rss_mib(target.pid)
    for sock in sockets:
        sock.close()
    time.sleep(2)
    return {"target": target.label, "when": when, "idle": idle, "held": held,
            "closed": rss_mib(target.pid), "connections": len(sockets)}


def print_table(rows, memory):
    """One line per scenario and target: medians over the rounds; a ratio
    is the median of each round's ratio to that round's ceiling."""
    ceilings = {(r["scenario"], r.get("round", 0)): r["rps"] for r in rows if r["target"] in ("axum", "rmcp")}
    rounds = len({r.get("round", 0) for r in rows})
    print()
    if rounds > 1:
        print("Medians of %d rounds." % rounds)
        print()
    print("| scenario | target | requests/s | p50 ms | p99 ms | server CPU | PostgreSQL CPU | Redis CPU "
          "| non-2xx | ratio to ceiling |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = {}
    for r in rows:
        lines.setdefault((r["scenario"], r["target"]), []).append(r)
    for (scenario, target), runs in lines.items():
        def median(key):
            return statistics.median(r.get(key, 0) for r in runs)
        ratios = [r["rps"] / ceilings[(scenario, r.get("round", 0))] for r in runs
                  if ceilings.get((scenario, r.get("round", 0))) and target not in ("axum", "rmcp")]
        ratio = "%.0f%%" % (100 * statistics.median(ratios)) if ratios else "-"
        if len(ratios) > 1:
            ratio += " (%.0f-%.0f%%)" % (100 * min(ratios), 100 * max(ratios))
        print("| %s | %s | %.0f | %.2f | %.2f | %.0f%% | %.0f%% | %.0f%% | %d | %s |" % (
            scenario, target, median("rps"), median("p50"), median("p99"), median("cpu"),
            median("pg_cpu"), median("redis_cpu"), sum(r["bad"] for r in runs), ratio))
    memory = [m for m in memory if m]
    if memory:
        print()
        print("| target | when | RSS idle | RSS with N idle connections | RSS once they closed | N |")
        print("|---|---|---:|---:|---:|---:|")
        for m in memory:
            print("| %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %d |" % (
                m["target"], m["when"], m["idle"], m["held"], m["closed"], m["connections"]))


if __name__ == "__main__":
    main()
