"""Upload limits on the wire: a body over the limit is refused without being read whole, a stalled one times out.

The ASGI app driven directly shows how much of an endless body it asks for; a real uvicorn server on a loopback port
and a raw socket show what a client sees: an answer before it has sent its body, and a closed connection.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import pytest
from _scripts import load_script

from cxrseg.server.app import ServerSettings, create_app

SEGMENT, HEALTH = "/api/v1/segment", "/api/v1/health"
MULTIPART = "multipart/form-data; boundary=b"


serve = load_script("scripts/screenshot_serve.py").serve  # uvicorn on a free loopback port in a thread


async def post_endless_upload(app, chunk: int = 65536, give_up: int = 64 * 2**20) -> tuple[list[dict], int]:
    """POST a multipart body that never ends (think 2 GB) straight to the ASGI app, one chunk per receive().

    Returns the messages the app sent and the bytes it asked for. (The TestClient reads a request body whole
    before the app sees any of it, so it cannot show this.) Gives up after ``give_up`` bytes.
    """
    sent, messages = 0, []
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.dcm"\r\n\r\n'

    async def receive() -> dict:
        nonlocal sent, head
        if messages:  # answered: the client is told the connection is over
            return {"type": "http.disconnect"}
        if sent >= give_up:
            raise AssertionError(f"the app read {sent} bytes of an endless upload")
        body, head = head + b"\0" * chunk, b""
        sent += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": SEGMENT, "raw_path": SEGMENT.encode(), "root_path": "",
             "query_string": b"", "headers": [(b"host", b"testserver"), (b"content-type", MULTIPART.encode())],
             "client": ("127.0.0.1", 1234), "server": ("testserver", 80), "state": {}}
    await app(scope, receive, send)
    return messages, sent


def test_an_endless_body_is_refused_once_past_the_limit_not_read_whole(pipeline):
    app = create_app(ServerSettings(max_upload_mb=1), pipeline=pipeline)
    messages, sent = asyncio.run(post_endless_upload(app))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert start["status"] == 413
    assert (b"content-type", b"application/json") in start["headers"]
    assert "1 MB" in json.loads(body)["detail"]
    # Read up to the limit (1 MB + the multipart allowance), then stopped at the first chunk past it.
    assert 1_000_000 < sent <= 1_000_000 + 64 * 1024 + 65536 + 200


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed): one HTTP/1.1 response from ``sock``; closed when the server hung up."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response"
        body += chunk
    try:
        closed = sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError, socket.timeout):
        closed = False
    return int(status_line.split()[1]), headers, body, closed


PART_HEAD = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'


def request_head(port: int, content_length: int) -> bytes:
    return (f"POST {SEGMENT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {MULTIPART}\r\n"
            f"Content-Length: {content_length}\r\n\r\n").encode()


@pytest.fixture(scope="module")
def live(pipeline):
    """A real server with a 1 MB limit and a 1 s upload deadline."""
    with serve(create_app(ServerSettings(max_upload_mb=1, upload_timeout_s=1.0), pipeline=pipeline)) as url:
        yield int(url.rsplit(":", 1)[1])


def test_a_2_gb_content_length_is_answered_413_before_any_body_is_sent(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(request_head(live, 2_000_000_000))  # and then nothing: the server must not wait for it
        status, headers, body, closed = read_response(sock, timeout=10)
    assert status == 413 and headers["content-type"] == "application/json"
    assert "1 MB" in json.loads(body)["detail"]
    assert time.monotonic() - start < 5
    assert closed  # the unread body cannot be skipped, so the connection is not kept


def test_a_chunked_upload_with_no_length_gets_413_while_the_client_is_still_sending(live):
    chunk = b"\0" * 65536
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        sock.sendall(f"POST {SEGMENT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MULTIPART}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        sock.sendall(b"%x\r\n%s\r\n" % (len(PART_HEAD), PART_HEAD))
        sock.settimeout(2)
        try:
            while sent < 2_000_000_000 and not select.select([sock], [], [], 0)[0]:  # until the server answers
                sock.sendall(framed)
                sent += len(chunk)
        except (TimeoutError, socket.timeout, BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading
        status, headers, body, _ = read_response(sock, timeout=10)
    assert status == 413 and "1 MB" in json.loads(body)["detail"]
    assert sent < 64 * 2**20  # a few socket buffers past 1 MB, not the 2 GB the client meant to send


def test_a_stalled_upload_gets_408_and_its_connection_closed(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(request_head(live, 100_000) + PART_HEAD + b"\x89PNG")
        status, headers, body, closed = read_response(sock, timeout=10)  # ... and the client stalls
        waited = time.monotonic() - start
    assert status == 408 and headers["content-type"] == "application/json"
    assert "did not arrive within 1 s" in json.loads(body)["detail"]
    assert 0.9 <= waited < 5
    assert closed


def test_a_trickling_upload_is_cut_off_at_the_deadline_too(live):
    """A client sending a byte now and then never stalls for long, but the whole body has one deadline."""
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(request_head(live, 100_000) + PART_HEAD)
        sock.setblocking(False)
        answer = b""
        while time.monotonic() - start < 5:
            time.sleep(0.1)
            try:
                answer = sock.recv(65536)  # read before sending more, so the answer is not lost to a reset
                break
            except BlockingIOError:
                pass
            try:
                sock.send(b"x")
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 <= waited < 5


def test_the_server_still_answers_after_refusing(live):
    import httpx2 as httpx

    assert httpx.get(f"http://127.0.0.1:{live}{HEALTH}").json()["status"] == "ok"
