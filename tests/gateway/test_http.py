"""The HTTP adapter against a real loopback server; waits go to a fake clock and are asserted."""

from __future__ import annotations

import socket
from email.utils import formatdate

import pytest
from httpserver import Reply, ScriptedServer, json_reply, proposals

from gateway.errors import SourceError
from gateway.ingest.base import Export
from gateway.ingest.http import PROBLEM_KEY, HttpAdapter, TokenBucket


class FakeTime:
    """A monotonic clock that only moves when someone sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def adapter(
    server: ScriptedServer, time: FakeTime, endpoints: list[str], **options: object
) -> HttpAdapter:
    settings: dict[str, object] = {"timeout": 2.0, "rate": 100.0}
    settings.update(options)
    return HttpAdapter(
        "optimizer",
        server.url,
        endpoints=endpoints,
        sleep=time.sleep,
        clock=time.clock,
        wall_clock=time.wall,
        **settings,  # type: ignore[arg-type]
    )


def one(http: HttpAdapter) -> Export:
    (export,) = list(http.exports())
    return export


# -- TokenBucket ---------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_spaces_takes_at_the_rate(fake_time: FakeTime) -> None:
    bucket = TokenBucket(rate=2.0, burst=3, clock=fake_time.clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(1.0)  # the previous token was taken on credit


def test_token_bucket_refills_with_time_but_never_beyond_the_burst(fake_time: FakeTime) -> None:
    bucket = TokenBucket(rate=1.0, burst=2, clock=fake_time.clock)
    bucket.take()
    bucket.take()
    fake_time.now += 100
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_token_bucket_rejects_a_zero_rate(fake_time: FakeTime) -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0, burst=1, clock=fake_time.clock)


# -- fetching ------------------------------------------------------------------------------


def test_proposals_of_all_endpoints_form_one_complete_export(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/routes/r1", proposals("A1", "A2"))
    http_server.script("/routes/r2", proposals("B1"))
    export = one(adapter(http_server, fake_time, ["/routes/r1", "routes/r2"]))
    assert export.complete
    assert export.problems == []
    assert export.location == http_server.url
    assert export.fingerprint is not None
    rows = [(r.row, r.values["order_id"]) for r in export.rows]
    assert rows == [(1, "A1"), (2, "A2"), (3, "B1")]
    assert export.counters == {"endpoints": 2, "endpoints_failed": 0, "proposals": 3}
    assert fake_time.waits == []


def test_the_token_is_sent_as_a_bearer_header_and_kept_out_of_the_export(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", proposals("A1"))
    export = one(adapter(http_server, fake_time, ["/p"], token="s3cret"))
    assert http_server.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in export.location


def test_the_same_bytes_give_the_same_fingerprint(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", proposals("A1"))
    http = adapter(http_server, fake_time, ["/p"])
    assert one(http).fingerprint == one(http).fingerprint


def test_429_waits_the_retry_after_seconds_then_retries(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", Reply(429, headers={"Retry-After": "7"}), proposals("A1"))
    export = one(adapter(http_server, fake_time, ["/p"]))
    assert export.complete
    assert fake_time.waits == [7.0]
    assert http_server.hits("/p") == 2


def test_429_with_an_http_date_waits_until_that_date_by_the_servers_clock(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    server_now = 1_700_000_000.0  # far from the fake wall clock: the Date header wins
    headers = {"Retry-After": formatdate(server_now + 12, usegmt=True)}
    headers["Date"] = formatdate(server_now, usegmt=True)
    http_server.script("/p", Reply(429, headers=headers), proposals("A1"))
    one(adapter(http_server, fake_time, ["/p"]))
    assert fake_time.waits == [12.0]


def test_429_without_retry_after_falls_back_to_the_backoff(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", Reply(429), proposals("A1"))
    one(adapter(http_server, fake_time, ["/p"], backoff=0.25))
    assert fake_time.waits == [0.25]


def test_a_retry_after_beyond_the_limit_fails_the_endpoint_without_waiting(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/good", proposals("A1"))
    http_server.script("/p", Reply(429, headers={"Retry-After": "3600"}))
    export = one(adapter(http_server, fake_time, ["/good", "/p"], max_retry_after=60))
    assert not export.complete
    assert export.problems == ["/p: HTTP 429, Retry-After 3600s is longer than 60s"]
    assert fake_time.waits == []


def test_5xx_is_retried_with_exponential_backoff(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", Reply(500), Reply(502), proposals("A1"))
    export = one(adapter(http_server, fake_time, ["/p"], backoff=0.5))
    assert export.complete
    assert [r.values["order_id"] for r in export.rows] == ["A1"]
    assert fake_time.waits == [0.5, 1.0]


def test_backoff_is_capped_and_the_endpoint_fails_after_the_last_retry(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/good", proposals("A1"))
    http_server.script("/p", Reply(503))
    http = adapter(http_server, fake_time, ["/good", "/p"], retries=4, backoff=1, backoff_max=3)
    export = one(http)
    assert fake_time.waits == [1.0, 2.0, 3.0, 3.0]
    assert http_server.hits("/p") == 5
    assert export.problems == ["/p: HTTP 503 Service Unavailable (5 attempts)"]


def test_4xx_other_than_429_is_never_retried(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/good", proposals("A1"))
    http_server.script("/p", Reply(403))
    export = one(adapter(http_server, fake_time, ["/good", "/p"]))
    assert http_server.hits("/p") == 1
    assert export.problems == ["/p: HTTP 403 Forbidden"]
    assert fake_time.waits == []


def test_a_slow_endpoint_times_out_is_retried_and_then_reported(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/good", proposals("A1"))
    http_server.script("/slow", Reply(200, b'{"proposals": []}', delay=5.0))
    http = adapter(http_server, fake_time, ["/good", "/slow"], timeout=0.2, retries=1)
    export = one(http)
    assert http_server.hits("/slow") == 2
    assert fake_time.waits == [0.5]
    assert export.problems == ["/slow: timed out after 0.2s (2 attempts)"]


def test_a_partial_fan_out_keeps_good_rows_but_is_marked_incomplete(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/routes/r1", proposals("A1"))
    http_server.script("/routes/r2", Reply(500))
    http_server.script("/routes/r3", proposals("C1"))
    http = adapter(http_server, fake_time, ["/routes/r1", "/routes/r2", "/routes/r3"], retries=2)
    export = one(http)
    assert not export.complete
    assert export.fingerprint is None
    assert export.problems == ["/routes/r2: HTTP 500 Internal Server Error (3 attempts)"]
    assert all("\n" not in p for p in export.problems)
    assert [r.values["order_id"] for r in export.rows] == ["A1", "C1"]
    assert export.counters["endpoints_failed"] == 1


def test_when_every_endpoint_fails_the_source_cannot_be_read(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", Reply(404))
    with pytest.raises(SourceError, match=r"'optimizer'.*all 1 endpoint\(s\) failed.*/p: HTTP 404"):
        one(adapter(http_server, fake_time, ["/p"]))


def test_a_refused_connection_is_retried_and_reported_in_one_line(fake_time: FakeTime) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = HttpAdapter(
        "optimizer",
        f"http://127.0.0.1:{port}",
        endpoints=["/p"],
        retries=1,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    with pytest.raises(SourceError) as caught:
        list(http.exports())
    assert "/p: connection failed (2 attempts)" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert fake_time.waits == [0.5]


def test_a_body_that_is_not_the_expected_json_fails_that_endpoint(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/good", proposals("A1"))
    http_server.script("/html", Reply(200, b"<html>maintenance</html>"))
    http_server.script("/shape", json_reply({"routes": []}))
    export = one(adapter(http_server, fake_time, ["/good", "/html", "/shape"]))
    assert export.problems[0].startswith("/html: response is not JSON: ")
    assert export.problems[1] == '/shape: response has no "proposals" list'


def test_a_proposal_that_is_not_an_object_is_kept_as_a_problem_row(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", json_reply({"proposals": [{"order_id": "A1"}, ["A2"], None]}))
    rows = list(one(adapter(http_server, fake_time, ["/p"])).rows)
    assert [r.row for r in rows] == [1, 2, 3]
    assert rows[1].values == {PROBLEM_KEY: "/p: proposal 2 is an array, not a JSON object"}
    assert rows[2].values == {PROBLEM_KEY: "/p: proposal 3 is null, not a JSON object"}


def test_requests_to_one_endpoint_are_spaced_by_its_token_bucket(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/a", proposals("A1"))
    http_server.script("/b", proposals("B1"))
    http = adapter(http_server, fake_time, ["/a", "/b"], rate=0.5, burst=1)
    one(http)
    assert fake_time.waits == []  # one bucket per path: /a and /b do not wait for each other
    one(http)
    assert fake_time.waits == [2.0]  # /a again, 1 / 0.5 s later; /b's token is earned by then


def test_503_with_retry_after_waits_that_long_instead_of_the_backoff(
    http_server: ScriptedServer, fake_time: FakeTime
) -> None:
    http_server.script("/p", Reply(503, headers={"Retry-After": "4"}), proposals("A1"))
    export = one(adapter(http_server, fake_time, ["/p"], backoff=0.5))
    assert export.complete
    assert fake_time.waits == [4.0]
