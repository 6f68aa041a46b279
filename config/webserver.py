"""gunicorn's threaded worker, except a request reaches a thread only once it has fully arrived.

gthread hands a connection to a thread as soon as its first bytes arrive; the thread then
blocks reading the rest. Sixteen clients that send half a request header (slowloris) or trickle
a body held every thread of a 2 x 4 web process, and /healthz timed out for as long as they
stayed connected. Here the worker's event loop, which already watches idle keep-alive sockets,
also reads each request's header and body (Content-Length or chunked) into memory, bounded in
size and time, the way a buffering proxy (nginx's proxy_request_buffering) does. A slow client
costs a socket and a buffer, never a thread, and one that is too slow is answered 408 and
dropped. What the event loop cannot judge (a malformed header, a body over the limit, TLS)
goes to a thread as before, and gunicorn's own parser answers it.

Procfile: `gunicorn --worker-class config.webserver.BufferingThreadWorker`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from functools import partial

from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

# The whole header must arrive within this many seconds of the first byte being awaited
# (nginx's client_header_timeout, Apache's mod_reqtimeout header=); the body may pause this
# long between reads (client_body_timeout).
HEADER_TIMEOUT = float(os.environ.get("WEB_HEADER_TIMEOUT_SECONDS", "10"))
BODY_IDLE_TIMEOUT = float(os.environ.get("WEB_BODY_TIMEOUT_SECONDS", "10"))
MAX_HEADER = 64 * 1024

_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class IncomingRequest:
    """One HTTP/1.x request arriving in pieces. `feed` returns True once it is complete, or
    once it is clear the event loop should not hold it any longer (too big, malformed: a
    thread's parser answers those)."""

    def __init__(self, now: float, max_body: int) -> None:
        self.max_body = max_body
        self.data = bytearray()
        self.header_end = -1  # index just past the blank line ending the header
        self.deadline = now + HEADER_TIMEOUT
        self.body_length: int | None = None  # Content-Length, once the header is in
        self.chunked = False
        self._chunk_pos = 0  # for a chunked body: where the next chunk-size line starts
        self.continue_wanted = False  # Expect: 100-continue, to answer before the body comes

    def feed(self, data: bytes, now: float) -> bool:
        self.data += data
        if self.header_end < 0:
            end = self.data.find(b"\r\n\r\n", max(0, len(self.data) - len(data) - 3))
            if end < 0:
                return len(self.data) > MAX_HEADER
            self.header_end = end + 4
            if not self._read_header():
                return True
        self.deadline = now + BODY_IDLE_TIMEOUT
        return self._body_complete()

    def _read_header(self) -> bool:
        """Note how the body is framed; False hands the request to a thread as it is."""
        lines = bytes(self.data[: self.header_end - 4]).split(b"\r\n")
        kept = [lines[0]]
        lengths: set[bytes] = set()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return False
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                self.chunked = self.chunked or value.endswith(b"chunked")
                if not value.endswith(b"chunked"):
                    return False
            elif name == b"expect" and value == b"100-continue" and lines[0].endswith(b"HTTP/1.1"):
                # Answered here so the client sends its body; the thread must not answer again.
                self.continue_wanted = True
                continue
            kept.append(line)
        if self.chunked:
            if lengths:
                return False  # both framings: gunicorn refuses it (request smuggling)
            self._chunk_pos = self.header_end
        elif lengths:
            if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
                return False
            self.body_length = int(lengths.pop())
            if self.body_length > self.max_body:
                return False
        if self.continue_wanted:
            body = bytes(self.data[self.header_end :])
            self.data = bytearray(b"\r\n".join(kept) + b"\r\n\r\n")
            self.header_end = len(self.data)
            self._chunk_pos = self.header_end if self.chunked else 0
            self.data += body
        return True

    def _body_complete(self) -> bool:
        if self.chunked:
            return self._chunks_complete()
        return len(self.data) - self.header_end >= (self.body_length or 0)

    def _chunks_complete(self) -> bool:
        """Walk the chunks that have arrived; True at the last chunk's trailers' end, or when
        the body is malformed or too big (a thread's parser answers)."""
        data = self.data
        while True:
            if self._chunk_pos - self.header_end > self.max_body:
                return True
            eol = data.find(b"\r\n", self._chunk_pos)
            if eol < 0:
                return False
            size_text = bytes(data[self._chunk_pos : eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return True
            if size > self.max_body:
                return True
            if size == 0:
                # The trailer section ends with an empty line: right away when there is none.
                return data.find(b"\r\n", eol + 2) == eol + 2 or data.find(b"\r\n\r\n", eol + 2) >= 0
            end = eol + 2 + size + 2
            if len(data) < end:
                return False
            self._chunk_pos = end


class BufferingThreadWorker(ThreadWorker):
    """See the module's docstring."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.arriving: dict[TConn, IncomingRequest] = {}
        self.max_body = 0

    def run(self) -> None:
        # The application is loaded by now, and with it Django's settings. The largest body
        # buffered here is the largest the application accepts (an upload), plus room for a
        # multipart envelope; a larger declared body goes to a thread at once, where the
        # application refuses it (413) without reading it.
        from django.conf import settings

        self.max_body = max(settings.API_MAX_BODY_BYTES, settings.UPLOAD_MAX_BYTES) + 64 * 1024
        # Each request's metrics (apps.ops.metrics) are summed in this process and sent by a
        # background thread every few tens of milliseconds, as a worker's pool process does:
        # no request waits for a Redis round trip of its own to count itself. What waits is
        # sent when the worker stops.
        from apps.core import redis as platform_redis

        platform_redis.write_behind_start()
        # Tracing (apps.core.telemetry) is set up when the application loads, in this process
        # (after the fork); what it has batched is exported before the worker exits.
        from apps.core import telemetry

        telemetry.configure("web")
        try:
            super().run()
        finally:
            platform_redis.write_behind_stop()
            telemetry.shutdown()

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.ECONNABORTED:
                return
            raise
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        if negotiation.prior_knowledge_allowed(self.cfg, client_addr):
            # HTTP/2 with prior knowledge (off unless configured) reads its own preface.
            client_sock.setblocking(True)
            self.enqueue_req(conn)
            return
        self._await_request(conn)

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request is arriving: read it here too."""
        if self.cfg.is_ssl:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_request(conn)

    def _await_request(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        self.arriving[conn] = IncomingRequest(time.monotonic(), self.max_body)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_request_bytes, conn))

    def _on_request_bytes(self, conn: TConn, client: socket.socket) -> None:
        incoming = self.arriving[conn]
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was whole
            self._drop(conn)
            return
        asked_continue = incoming.continue_wanted
        done = incoming.feed(data, time.monotonic())
        if incoming.continue_wanted and not asked_continue and not done:
            with contextlib.suppress(OSError):
                conn.sock.send(_CONTINUE)
        if done:
            self.poller.unregister(conn.sock)
            del self.arriving[conn]
            conn.arrived = bytes(incoming.data)
            conn.data_ready = True
            self.enqueue_req(conn)

    def _drop(self, conn: TConn, answer: bytes = b"") -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.arriving.pop(conn, None)
        if answer:
            with contextlib.suppress(OSError):
                conn.sock.send(answer)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Every second or so from the event loop: also drop requests that stopped arriving."""
        super().murder_pending()
        now = time.monotonic()
        for conn, incoming in list(self.arriving.items()):
            if incoming.deadline <= now:
                # Nothing at all on a kept-alive connection is an idle client, not a slow one.
                self._drop(conn, _TIMEOUT_ANSWER if incoming.data else b"")

    def handle(self, conn: TConn) -> object:
        arrived = getattr(conn, "arrived", None)
        if arrived is not None:
            conn.arrived = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(arrived)
        return super().handle(conn)
