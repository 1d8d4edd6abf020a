"""Open dispatch boards for the benchmarks: ``python -m bench._boards URL N NAME PASSWORD OUT``.

One process (as browsers are processes of their own) with ``N`` threads, each logging in as a
browser does (the login form's token and cookie, then the session cookie) and holding the event
stream open, counting its events and bytes. On SIGTERM it writes ``{"boards", "events",
"bytes", "errors"}`` to OUT and exits. Plain ``http.client``: no dependency of its own.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import sys
import threading
import time
from urllib.parse import urlencode, urlsplit

_counts = {"events": 0, "bytes": 0, "errors": 0, "connected": 0}
_lock = threading.Lock()


def _cookie(response: http.client.HTTPResponse, name: str) -> str:
    for header in response.headers.get_all("set-cookie") or []:
        if header.startswith(name + "="):
            return header.split(";", 1)[0]
    raise RuntimeError(f"no {name} cookie")


def board(url: str, name: str, password: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    try:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("GET", "/login")
        page = conn.getresponse()
        login_cookie = _cookie(page, "crossdock_login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.read().decode())
        assert token is not None
        conn.request("POST", "/login", urlencode({"csrf": token.group(1), "name": name,
                                                  "password": password}),
                     {"Content-Type": "application/x-www-form-urlencoded",
                      "Cookie": login_cookie, "Origin": f"http://{host}:{port}"})
        done = conn.getresponse()
        session = _cookie(done, "crossdock_board")
        done.read()
        conn.close()
        stream = http.client.HTTPConnection(host, port, timeout=None)
        stream.request("GET", "/events", headers={"Cookie": session})
        events = stream.getresponse()
        if events.status != 200:
            raise RuntimeError(f"/events: {events.status}")
        with _lock:
            _counts["connected"] += 1
        while True:
            line = events.fp.readline()
            if not line:
                return
            with _lock:
                _counts["bytes"] += len(line)
                if line.startswith(b"event: sections"):
                    _counts["events"] += 1
    except Exception as exc:
        print(f"board client: {exc}", file=sys.stderr)
        with _lock:
            _counts["errors"] += 1


def main() -> None:
    url, n, name, password, out = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]

    def finish(*_args: object) -> None:
        with _lock:
            data = {"boards": n, **_counts}
        with open(out, "w", encoding="utf-8") as f:
            json.dump(data, f)
        sys.exit(0)

    signal.signal(signal.SIGTERM, finish)
    for _ in range(n):
        threading.Thread(target=board, args=(url, name, password), daemon=True).start()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
