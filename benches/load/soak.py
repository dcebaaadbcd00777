#!/usr/bin/env python3
"""A soak: mixed traffic against mcp-server on PostgreSQL for `--minutes`,
resident memory and open descriptors sampled every 10 s.

Traffic, each kind from its own threads on keep-alive connections:

- REST: `GET /health`, `GET /api/auth/me` (JWT), `GET /api/agents` (API key),
  `POST /api/agents` (a row inserted), then `DELETE` of it;
- MCP over Streamable HTTP: `tools/call whoami` and `tools/list`
  (2026-07-28, stateless), with the API key;
- MCP over WebSocket (`/ws`): `initialize`, then `tools/call` on the same
  connection, a new connection every 200 calls;
- OAuth: a client registered (RFC 7591), authorized through the login and
  consent pages with PKCE, then its refresh token used over and over (each
  refresh rotates it) and each access token used for a `tools/call`;
- bad credentials: a forged JWT, a made-up API key, a wrong password.

Prints the requests by kind and status, the samples, and a verdict: no
`5xx` and no transport error, and memory flat after warm-up (the last
sample within 25% of the one at the end of the first quarter, or within
16 MiB of it).

    cargo build --release -p mcp-server --bin mcp-server
    python3 benches/load/soak.py --minutes 10 [--json soak.json]
"""

import argparse
import base64
import collections
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server, its database and credentials)

REDIRECT = "http://127.0.0.1:9/callback"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.by = collections.Counter()

    def add(self, kind, status):
        with self.lock:
            self.by[(kind, status)] += 1

    def total(self):
        with self.lock:
            return sum(self.by.values())


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, address):
        self.address = address
        self.conn = None

    def request(self, method, path, headers=None, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.address, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (http.client.HTTPException, ConnectionError, socket.timeout):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def mcp_call(name, arguments=None):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": name if name == "tools/list" else "tools/call",
                       "params": dict({} if name == "tools/list" else {"name": name, "arguments": arguments or {}},
                                      _meta={"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                             "io.modelcontextprotocol/clientCapabilities": {}})})


def mcp_headers(credential, method, name=None):
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": method}
    headers.update(credential)
    if name:
        headers["mcp-name"] = name
    return headers


def answered(data):
    """Whether an MCP answer (JSON or one SSE event) carries a result."""
    text = data.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("data:"):
            text = line[5:]
            break
    try:
        return "result" in json.loads(text)
    except ValueError:
        return False


def rest(address, creds, counts, stop):
    client = Client(address)
    jwt = {"authorization": "Bearer " + creds["jwt"], "content-type": "application/json"}
    key = {"x-api-key": creds["key"]}
    n = 0
    while not stop.is_set():
        n += 1
        for kind, method, path, headers, body in (
            ("GET /health", "GET", "/health", {}, None),
            ("GET /api/auth/me", "GET", "/api/auth/me", jwt, None),
            ("GET /api/agents", "GET", "/api/agents?limit=5", key, None),
        ):
            status, _, _ = client.request(method, path, headers, body)
            counts.add(kind, status)
        if n % 5 == 0:
            status, _, data = client.request("POST", "/api/agents", jwt,
                                             json.dumps({"name": "soak-%d-%d" % (threading.get_ident(), n), "type": "web"}))
            counts.add("POST /api/agents", status)
            if status == 201:
                agent = json.loads(data)["id"]
                status, _, _ = client.request("DELETE", "/api/agents/" + agent, jwt)
                counts.add("DELETE /api/agents/{id}", status)


def mcp_http(address, creds, counts, stop):
    client = Client(address)
    key = {"x-api-key": creds["key"]}
    while not stop.is_set():
        status, _, data = client.request("POST", "/mcp", mcp_headers(key, "tools/call", "whoami"), mcp_call("whoami"))
        counts.add("MCP tools/call", status if answered(data) or status != 200 else "200 without a result")
        status, _, data = client.request("POST", "/mcp", mcp_headers(key, "tools/list"), mcp_call("tools/list"))
        counts.add("MCP tools/list", status)


class WebSocket:
    """The client side of RFC 6455, text frames only: what the soak needs."""

    def __init__(self, address, headers):
        self.sock = socket.create_connection(address, timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET /ws HTTP/1.1", "Host: %s:%d" % address, "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        lines += ["%s: %s" % item for item in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self):
        """The next text message (pings answered, other frames skipped)."""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(length)
            opcode = first & 0x0F
            if opcode == 0x1:
                return payload.decode()
            if opcode == 0x8:
                raise ConnectionError("closed by the server")
            if opcode == 0x9:
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def close(self):
        try:
            self.sock.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


def ws_outcome(text):
    """`ok`, or the JSON-RPC error's code."""
    answer = json.loads(text)
    return "ok" if "result" in answer else "error %s" % answer.get("error", {}).get("code")


def mcp_ws(address, creds, counts, stop):
    while not stop.is_set():
        ws = WebSocket(address, {"x-api-key": creds["key"]})
        counts.add("WS upgrade", ws.status)
        if ws.status != 101:
            time.sleep(0.1)
            continue
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}}))
        counts.add("WS initialize", ws_outcome(ws.receive()))
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        for i in range(1, 201):
            if stop.is_set():
                break
            ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                "params": {"name": "whoami", "arguments": {}}}))
            counts.add("WS tools/call", ws_outcome(ws.receive()))
        ws.close()


def hidden(html, name):
    match = re.search(r'name="%s" value="([^"]*)"' % name, html)
    if not match:
        raise RuntimeError("no %s in the page" % name)
    return (match.group(1).replace("&quot;", '"').replace("&#39;", "'").replace("&lt;", "<")
            .replace("&gt;", ">").replace("&amp;", "&"))


def cookie(headers, name):
    for key, value in headers:
        if key.lower() == "set-cookie" and value.startswith(name + "="):
            return value.split(";", 1)[0]
    raise RuntimeError("no %s cookie" % name)


def oauth_tokens(address, email, password):
    """Registration, the login and consent pages, and the code exchange."""
    client = Client(address)
    form = {"content-type": "application/x-www-form-urlencoded"}
    status, _, data = client.request("POST", "/oauth/register", {"content-type": "application/json"},
                                     json.dumps({"redirect_uris": [REDIRECT], "client_name": "soak"}))
    assert status == 201, (status, data)
    client_id = json.loads(data)["client_id"]
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                                    "code_challenge": CHALLENGE, "code_challenge_method": "S256",
                                    "state": "s", "scope": "mcp"})
    origin = "http://%s:%d" % address
    status, headers, data = client.request("GET", "/oauth/authorize?" + query)
    assert status == 200, (status, data)
    html = data.decode()
    body = urllib.parse.urlencode({"action": "login", "query": hidden(html, "query"), "csrf": hidden(html, "csrf"),
                                   "email": email, "password": password})
    status, headers2, data = client.request("POST", "/oauth/authorize", dict(form, cookie=cookie(headers, "mcp_oauth_login"),
                                                                              origin=origin), body)
    assert status == 200, (status, data)
    html = data.decode()
    body = urllib.parse.urlencode([("action", "consent"), ("query", hidden(html, "query")),
                                   ("csrf", hidden(html, "csrf")), ("scope", "mcp")])
    status, headers3, data = client.request("POST", "/oauth/authorize", dict(form, cookie=cookie(headers2, "mcp_oauth_session"),
                                                                              origin=origin), body)
    assert status == 303, (status, data)
    location = dict((k.lower(), v) for k, v in headers3)["location"]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
    status, _, data = client.request("POST", "/oauth/token", form, urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER, "client_id": client_id}))
    assert status == 200, (status, data)
    tokens = json.loads(data)
    return client_id, tokens["access_token"], tokens["refresh_token"]


def oauth(address, creds, counts, stop):
    client_id, access, refresh = oauth_tokens(address, bench_email(), bench.PASSWORD)
    counts.add("OAuth authorization", 200)
    client = Client(address)
    form = {"content-type": "application/x-www-form-urlencoded"}
    while not stop.is_set():
        status, _, data = client.request("POST", "/oauth/token", form, urllib.parse.urlencode({
            "grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id}))
        counts.add("OAuth refresh", status)
        if status != 200:
            time.sleep(0.1)
            continue
        tokens = json.loads(data)
        access, refresh = tokens["access_token"], tokens["refresh_token"]
        for _ in range(5):
            status, _, data = client.request("POST", "/mcp", mcp_headers({"authorization": "Bearer " + access},
                                                                         "tools/call", "whoami"), mcp_call("whoami"))
            counts.add("MCP tools/call (OAuth token)", status)
        time.sleep(0.05)


def bench_email():
    return "bench@example.com"


def bad_credentials(address, creds, counts, stop):
    client = Client(address)
    forged = creds["jwt"][:-4] + ("AAAA" if not creds["jwt"].endswith("AAAA") else "BBBB")
    made_up = "mcp_" + "x" * 49
    while not stop.is_set():
        status, _, _ = client.request("GET", "/api/auth/me", {"authorization": "Bearer " + forged})
        counts.add("bad: forged JWT", status)
        status, _, _ = client.request("GET", "/api/auth/me", {"x-api-key": made_up})
        counts.add("bad: made-up key", status)
        status, _, _ = client.request("POST", "/api/auth/login", {"content-type": "application/json"},
                                      json.dumps({"email": "nobody@example.com", "password": "not-the-password"}))
        counts.add("bad: wrong password", status)
        time.sleep(0.02)


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--server", default=os.path.join(bench.RELEASE, "mcp-server"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    database = "mcp_soak_%d" % os.getpid()
    bench.psql("DROP DATABASE IF EXISTS %s" % database, "CREATE DATABASE %s" % database)
    env = bench.server_env(database, None)
    # The OAuth pages accept form posts from the server's own origin only:
    # it must be known before the start, so the port is chosen here.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env["MCP_BIND"] = "127.0.0.1:%d" % port
    env["MCP_PUBLIC_URL"] = "http://127.0.0.1:%d" % port
    # The soak's own bad logins must not lock its good ones out.
    env["MCP_RATE_LIMIT_AUTH"] = "1000000/60s"
    # Nor its WebSocket messages be refused (this measures serving them).
    env["MCP_RATE_LIMIT_WS"] = "1000000/60s"
    target = bench.Target("soak", [args.server], env, 1)
    try:
        creds = bench.credentials_for(target)
        address = target.address
        counts = Counts()
        stop = threading.Event()
        errors = []

        def run(work):
            def body():
                try:
                    work(address, creds, counts, stop)
                except Exception as error:  # a transport error or a failed step
                    errors.append("%s: %r" % (work.__name__, error))
                    stop.set()
            return threading.Thread(target=body, daemon=True)

        threads = [run(w) for w in (rest, rest, mcp_http, mcp_http, mcp_ws, oauth, bad_credentials)]
        samples = []
        start = time.time()
        samples.append({"t": 0, "requests": 0, "rss_mib": round(bench.rss_mib(target.pid), 1), "fds": fds(target.pid)})
        for thread in threads:
            thread.start()
        deadline = start + args.minutes * 60
        while time.time() < deadline and not stop.is_set():
            time.sleep(min(10, max(0, deadline - time.time())))
            samples.append({"t": round(time.time() - start), "requests": counts.total(),
                            "rss_mib": round(bench.rss_mib(target.pid), 1), "fds": fds(target.pid)})
            print("%4ds %9d requests  rss %6.1f MiB  fds %d" % (
                samples[-1]["t"], samples[-1]["requests"], samples[-1]["rss_mib"], samples[-1]["fds"]), flush=True)
        stop.set()
        for thread in threads:
            thread.join(60)
    finally:
        target.stop()
        bench.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % database)

    elapsed = samples[-1]["t"] or 1
    print("\n| kind | status | requests |\n|---|---|---:|")
    for (kind, status), n in sorted(counts.by.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        print("| %s | %s | %d |" % (kind, status, n))
    five = sum(n for (_, status), n in counts.by.items() if isinstance(status, int) and status >= 500)
    odd = sum(n for (_, status), n in counts.by.items() if not isinstance(status, int) and status != "ok")
    quarter = next((s for s in samples if s["t"] >= elapsed / 4), samples[-1])
    last = samples[-1]
    flat = last["rss_mib"] <= max(quarter["rss_mib"] * 1.25, quarter["rss_mib"] + 16)
    print("\n%d requests in %d s (%.0f/s); 5xx: %d; failed answers: %d; transport errors: %d" % (
        counts.total(), elapsed, counts.total() / elapsed, five, odd, len(errors)))
    print("rss: start %.1f MiB, after warm-up (%d s) %.1f MiB, end %.1f MiB, peak %.1f MiB" % (
        samples[0]["rss_mib"], quarter["t"], quarter["rss_mib"], last["rss_mib"], max(s["rss_mib"] for s in samples)))
    print("fds: start %d, end %d, peak %d" % (samples[0]["fds"], last["fds"], max(s["fds"] for s in samples)))
    for error in errors:
        print("error: " + error)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counts": [[k, str(s), n] for (k, s), n in counts.by.items()], "samples": samples,
                       "errors": errors}, f, indent=1)
    ok = five == 0 and odd == 0 and not errors and flat
    print("verdict: %s" % ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
