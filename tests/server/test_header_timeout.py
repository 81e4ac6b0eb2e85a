"""The request-head deadline on the wire: a real uvicorn server, started as ``cxrseg serve`` starts it, on a
loopback port; raw sockets that stall before or during their headers are closed, normal requests still work.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from cxrseg.server.app import KEEP_ALIVE_S, ServerSettings, create_app, uvicorn_options

DEADLINE = 0.5  # the test server's header deadline, seconds
MARGIN = 2.0  # how much later than the deadline a close may come on a loaded machine
HEALTH = "/api/v1/health"


@contextlib.contextmanager
def serve_like_cli(settings: ServerSettings, pipeline) -> Iterator[int]:
    """Run the app under uvicorn with ``cxrseg serve``'s options on a free loopback port; yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(settings, pipeline=pipeline), **{**uvicorn_options(settings),
                                                                        "log_level": "warning"})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def port(pipeline) -> Iterator[int]:
    with serve_like_cli(ServerSettings(header_timeout_s=DEADLINE), pipeline) as p:
        yield p


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reads EOF or a reset); fails after ``limit`` seconds."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, TimeoutError, socket.timeout) as e:
        assert not isinstance(e, (TimeoutError, socket.timeout)), f"still open after {limit} s"
        data = b""
    assert data == b"", f"the server answered instead of closing: {data!r}"
    return time.monotonic() - start


def test_a_connection_that_sends_nothing_is_closed(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        waited = seconds_until_closed(sock, DEADLINE + MARGIN)
    assert waited >= DEADLINE - 0.1


def test_a_connection_that_sends_half_a_request_head_is_closed(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {HEALTH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
        waited = seconds_until_closed(sock, DEADLINE + MARGIN)
    assert waited >= DEADLINE - 0.1


def test_a_trickled_head_is_cut_off_at_the_deadline_too(port):
    """A byte now and then never stalls for long, but the head as a whole has one deadline."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(f"GET {HEALTH} HTTP/1.1\r\n".encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - start < DEADLINE + MARGIN:
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.1)
        waited = time.monotonic() - start
    assert DEADLINE - 0.1 <= waited < DEADLINE + MARGIN


def get_health(sock: socket.socket) -> int:
    """Send one GET of the health route on ``sock`` and read its whole answer; returns the status."""
    sock.sendall(f"GET {HEALTH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


def test_a_normal_request_works(port):
    assert httpx.get(f"http://127.0.0.1:{port}{HEALTH}").json()["status"] == "ok"


def test_keep_alive_still_works_and_the_next_head_has_the_deadline_too(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert get_health(sock) == 200
        time.sleep(2 * DEADLINE)  # idle between requests: past the head deadline, within keep-alive
        assert get_health(sock) == 200
        sock.sendall(f"GET {HEALTH} HTTP/1.1\r\n".encode())  # the next request's head stalls halfway
        waited = seconds_until_closed(sock, DEADLINE + MARGIN)
    assert waited >= DEADLINE - 0.1
    assert KEEP_ALIVE_S > DEADLINE + MARGIN  # so it was the head deadline that closed it, not keep-alive


def test_the_deadline_must_be_positive():
    from cxrseg.errors import CxrsegError

    with pytest.raises(CxrsegError, match="header timeout"):
        ServerSettings(header_timeout_s=0).check()
