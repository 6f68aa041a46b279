"""How the web worker's event loop tells that a request has fully arrived (config.webserver),
before any thread is given to it."""

from __future__ import annotations

import pytest

from config.webserver import IncomingRequest

LIMIT = 1000


def arrive(*pieces: bytes) -> tuple[IncomingRequest, list[bool]]:
    incoming = IncomingRequest(0.0, LIMIT)
    return incoming, [incoming.feed(piece, 0.0) for piece in pieces]


def test_a_header_split_across_reads_completes_at_its_blank_line():
    _, done = arrive(b"GET /healthz HTTP/1.1\r\nHo", b"st: x\r\n", b"\r", b"\n")

    assert done == [False, False, False, True]


def test_a_body_with_a_length_completes_when_every_byte_is_in():
    incoming, done = arrive(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", b"cd", b"e")

    assert done == [False, False, True]
    assert bytes(incoming.data).endswith(b"\r\n\r\nabcde")


def test_a_chunked_body_completes_after_its_last_chunk_and_trailers():
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    _, done = arrive(head + b"3;x=1\r\nab", b"c\r\n0\r\n", b"T: 1\r\n", b"\r\n")

    assert done == [False, False, False, True]


def test_a_chunked_body_without_trailers_completes_at_the_empty_line():
    _, done = arrive(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n", b"\r\n")

    assert done == [False, True]


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Both framings (request smuggling), a bad length, a bad chunk size, a body over the
        # limit, a header line without a colon: a thread's parser answers, not the event loop.
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
        b"POST / HTTP/1.1\r\nno colon here\r\n\r\n",
    ],
)
def test_what_the_event_loop_cannot_judge_goes_to_a_thread_at_once(request_bytes):
    _, done = arrive(request_bytes)

    assert done == [True]


def test_a_header_past_its_limit_goes_to_a_thread_before_its_end():
    _, done = arrive(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000)

    assert done == [True]


def test_expect_100_continue_is_answered_here_and_removed_from_the_request():
    incoming, done = arrive(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", b"{}")

    assert done == [False, True]
    assert incoming.continue_wanted
    assert bytes(incoming.data) == b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"


def test_each_read_of_the_body_moves_its_deadline():
    incoming = IncomingRequest(0.0, LIMIT)
    header_deadline = incoming.deadline
    incoming.feed(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", 5.0)
    first = incoming.deadline
    incoming.feed(b"abc", 7.0)

    assert header_deadline == pytest.approx(10.0)
    assert incoming.deadline == first + 2.0
