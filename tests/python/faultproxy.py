"""A fault-injecting HTTP/1.1 proxy for the object-store drills.

It sits between a clicklake process and the S3 server (the process's
`AWS_ENDPOINT_URL` points at the proxy) and understands just enough HTTP/1.1
to see each request and its response (Content-Length and chunked bodies,
keep-alive, HEAD and 1xx/204/304 replies), so it can:

- delay every request by a random time in `latency` (seconds, `(low, high)`):
  a slow store;
- forward a Delta commit (`PUT .../_delta_log/<version>.json`) to the server,
  read the server's answer and then close the client's connection without
  answering, `drop_commit_replies` times: an ambiguous commit, where the
  writer sees an error although the commit landed.

It runs an asyncio loop in a daemon thread; `start()` returns the address to
point a client at, `stop()` closes it. Counters are in `stats`."""

import asyncio
import random
import re
import threading
import time

COMMIT_PUT = re.compile(r"/_delta_log/(\d{20})\.json(\?|$)")


class FaultProxy:
    def __init__(self, upstream: str, latency=(0.0, 0.0), drop_commit_replies: int = 0,
                 drop_table: str = "ad_clicks", drop_from_version: int = 1, seed: int = 1):
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self.upstream = (host, int(port))
        self.latency = latency
        self.drop_table = drop_table
        self.drop_from_version = drop_from_version
        self._drops_left = drop_commit_replies
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.stats = {"connections": 0, "requests": 0, "bytes_up": 0, "bytes_down": 0, "delay_s": 0.0,
                      "commit_puts": 0, "upstream_errors": 0}
        # (method, path, status from the server) of every reply the proxy dropped.
        self.dropped: list = []
        # (path, status) of every commit PUT seen.
        self.commits: list = []
        self._loop = None
        self._server = None
        self._thread = None
        self.address = None

    # -- control, from the test's thread --------------------------------

    def start(self) -> str:
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._client, "127.0.0.1", 0, limit=1 << 20))
            port = self._server.sockets[0].getsockname()[1]
            self.address = f"127.0.0.1:{port}"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self.address

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def arm_drops(self, n: int):
        """Drop the replies of the next `n` landed commits of the table."""
        with self._lock:
            self._drops_left = n

    def stop(self):
        if self._loop is None:
            return

        async def close():
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        fut = asyncio.run_coroutine_threadsafe(close(), self._loop)
        try:
            fut.result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    # -- the proxy, on its own loop --------------------------------------

    def _take_drop(self, method: str, path: str, status: int) -> bool:
        m = COMMIT_PUT.search(path)
        if method != "PUT" or not m or not (200 <= status < 300):
            return False
        if f"/{self.drop_table}/_delta_log/" not in path or int(m.group(1)) < self.drop_from_version:
            return False
        with self._lock:
            if self._drops_left <= 0:
                return False
            self._drops_left -= 1
            self.dropped.append((method, path, status))
            return True

    async def _client(self, creader, cwriter):
        self.stats["connections"] += 1
        ureader = uwriter = None
        try:
            while True:
                try:
                    head = await creader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path, headers = parse_head(head)
                body = await read_body(creader, headers, request=True)
                self.stats["requests"] += 1
                self.stats["bytes_up"] += len(head) + len(body)
                lo, hi = self.latency
                if hi > 0:
                    delay = self._rng.uniform(lo, hi)
                    self.stats["delay_s"] += delay
                    await asyncio.sleep(delay)
                for attempt in (1, 2):
                    reused = uwriter is not None
                    if uwriter is None:
                        try:
                            ureader, uwriter = await asyncio.open_connection(*self.upstream, limit=1 << 20)
                        except OSError:
                            self.stats["upstream_errors"] += 1
                            return  # the client sees its connection closed
                    try:
                        uwriter.write(head + body)
                        await uwriter.drain()
                        # The answer, after any interim 1xx replies.
                        while True:
                            rhead = await ureader.readuntil(b"\r\n\r\n")
                            status, rheaders = parse_status(rhead)
                            if 100 <= status < 200 and status != 101:
                                cwriter.write(rhead)
                                await cwriter.drain()
                                continue
                            break
                        break
                    except (asyncio.IncompleteReadError, ConnectionError):
                        # A kept-alive upstream connection the server had
                        # closed: send once more on a new one.
                        uwriter.close()
                        ureader = uwriter = None
                        if not reused or attempt == 2:
                            raise
                if method == "HEAD" or status in (204, 304):
                    rbody = b""
                else:
                    rbody = await read_body(ureader, rheaders, request=False)
                self.stats["bytes_down"] += len(rhead) + len(rbody)
                if COMMIT_PUT.search(path) and method == "PUT":
                    self.stats["commit_puts"] += 1
                    self.commits.append((path, status))
                if self._take_drop(method, path, status):
                    # The commit landed; the writer never hears of it.
                    cwriter.transport.abort()
                    return
                cwriter.write(rhead + rbody)
                await cwriter.drain()
                framed = "content-length" in rheaders or "chunked" in rheaders.get("transfer-encoding", "").lower()
                if rheaders.get("connection", "").lower() == "close" or not framed and rbody_read_to_eof(method, status):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.LimitOverrunError):
            self.stats["upstream_errors"] += 1
        except asyncio.CancelledError:
            pass
        finally:
            for w in (cwriter, uwriter):
                if w is not None:
                    try:
                        w.close()
                    except Exception:
                        pass


def rbody_read_to_eof(method: str, status: int) -> bool:
    """Whether an unframed reply body was read until the server closed."""
    return not (method == "HEAD" or status in (204, 304))


def parse_head(head: bytes):
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    return method, path, headers_of(lines[1:])


def parse_status(head: bytes):
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split(" ", 2)[1]), headers_of(lines[1:])


def headers_of(lines):
    out = {}
    for line in lines:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


async def read_body(reader, headers: dict, request: bool) -> bytes:
    """The raw bytes of a body, as framed on the wire (chunks kept as is)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # Trailers, up to the empty line.
                while True:
                    line = await reader.readuntil(b"\r\n")
                    out += line
                    if line == b"\r\n":
                        return bytes(out)
            out += await reader.readexactly(size + 2)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if request:
        return b""
    return await reader.read()  # until the server closes


def wait_http(url: str, timeout: float = 60.0):
    """Wait until something answers HTTP at `url` (any status)."""
    import urllib.error
    import urllib.request
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
