"""An HTTP source (the route optimizer's API) read through requests.

Expected shape: every endpoint answers ``GET {base_url}/{endpoint}`` with a JSON object
``{"proposals": [{...}, {...}]}``: a list of proposal objects, each with at least ``order_id``
and the proposed fields (``driver``, ``route``, ``sequence``...). Each proposal object is one
``RawRow`` as is; row numbers run 1-based over all endpoints in the configured order. An item
that is not a JSON object is still yielded, as ``{"__problem__": "..."}`` (the same convention
as CSV drops), so the validator quarantines it. Checking ``order_id`` and the fields is the
mapping's and validator's job, not this module's.

Rules of this module:

* ``exports()`` fetches every endpoint, then yields one ``Export`` (location = ``base_url``).
  When any endpoint ultimately fails, the export has ``complete=False`` and ``problems`` holds
  one line per failed endpoint (path, then status or error); the proposals of the endpoints
  that answered are still yielded, and the gateway records them but never merges a partial set
  as if it were complete. When every endpoint fails, ``exports()`` raises ``SourceError``.
* ``fingerprint`` is a SHA-256 over the endpoints' paths and bodies for a complete export,
  None for a partial one.
* Retries: ``retries`` more attempts after the first. 5xx answers, timeouts and connection
  errors are retried after an exponential backoff ``backoff * 2**n`` capped at ``backoff_max``.
  A 429 (or a 503) is retried after its ``Retry-After`` (delta seconds or an HTTP-date, read
  against the response's ``Date`` header when it has one); without one, after the backoff. A
  ``Retry-After`` longer than ``max_retry_after`` fails the endpoint at once instead of blocking
  the poller. Any other 4xx is never retried.
* Rate: every request first takes a token from a ``TokenBucket`` kept per host and path, so
  retries and successive polls of one endpoint stay under ``rate`` requests a second (bursts up
  to ``burst``).
* Waiting goes through the injected ``sleep``; ``clock`` (monotonic) drives the buckets and
  ``wall_clock`` reads HTTP-dates when the server sent no ``Date``. The token, if any, is sent as
  ``Authorization: Bearer ...`` and never appears in a location or problem.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from gateway.errors import SourceError
from gateway.ingest.base import PROBLEM_KEY, Export, RawRow

_MAX_ERROR = 200
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take()`` says how long to wait.

    ``take()`` always takes a token: when none is left it takes one on credit and returns the
    seconds until that token will have been earned, so a caller that sleeps that long and then
    sends stays within the rate.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True)
class _Fetched:
    endpoint: str
    body: bytes
    proposals: list[object]


class _EndpointFailed(Exception):
    """One endpoint gave up; ``str()`` is its one-line problem. Never leaves this module."""


class HttpAdapter:
    """Fans out GETs to the optimizer's endpoints and yields their proposals as one export."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        endpoints: list[str],
        token: str | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        rate: float = 5.0,
        burst: float | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not endpoints:
            raise ValueError(f"http source {name!r}: no endpoints configured")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._token = token
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def exports(self) -> Iterator[Export]:
        """One export per call: the proposals of every endpoint, marked partial if any failed."""
        fetched: list[_Fetched] = []
        problems: list[str] = []
        for endpoint in self.endpoints:
            try:
                fetched.append(self._fetch(endpoint))
            except _EndpointFailed as failure:
                problems.append(str(failure))
        if not fetched:
            raise SourceError(
                f"http source {self.name!r} ({self.base_url}): all {len(problems)} endpoint(s) "
                f"failed; first: {problems[0]}"
            )
        fingerprint = None
        if not problems:
            digest = hashlib.sha256()
            for item in fetched:
                digest.update(item.endpoint.encode() + b"\0" + item.body + b"\0")
            fingerprint = digest.hexdigest()
        counters = {
            "endpoints": len(self.endpoints),
            "endpoints_failed": len(problems),
            "proposals": sum(len(item.proposals) for item in fetched),
        }
        yield Export(
            location=self.base_url,
            fingerprint=fingerprint,
            rows=_rows(fetched),
            complete=not problems,
            problems=problems,
            counters=counters,
        )

    def done(self, export: Export) -> None:
        """Nothing to move aside: the gateway's diff makes the next poll's repeats harmless."""

    # -- one endpoint ----------------------------------------------------------------------

    def _url(self, endpoint: str) -> str:
        return f"{self.base_url}/{endpoint.lstrip('/')}"

    def _bucket(self, url: str) -> TokenBucket:
        parts = urlsplit(url)
        key = (parts.netloc, parts.path)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
        return bucket

    def _fetch(self, endpoint: str) -> _Fetched:
        url = self._url(endpoint)
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        attempts = self.retries + 1
        for attempt in range(attempts):
            wait = self._bucket(url).take()
            if wait > 0:
                self._sleep(wait)
            last = attempt == attempts - 1
            try:
                response = self._session.get(url, headers=headers, timeout=self.timeout)
            except requests.Timeout as exc:
                if last:
                    raise _EndpointFailed(
                        f"{endpoint}: timed out after {self.timeout}s ({attempts} attempts)"
                    ) from exc
                self._sleep(self._backoff(attempt))
                continue
            except requests.ConnectionError as exc:
                if last:
                    raise _EndpointFailed(
                        f"{endpoint}: connection failed ({attempts} attempts): {_short(exc)}"
                    ) from exc
                self._sleep(self._backoff(attempt))
                continue
            except requests.RequestException as exc:
                raise _EndpointFailed(f"{endpoint}: {type(exc).__name__}: {_short(exc)}") from exc
            with response:
                status = response.status_code
                if 200 <= status < 300:
                    return _decode(endpoint, response.content)
                retryable = status == 429 or status >= 500
                if not retryable:
                    raise _EndpointFailed(f"{endpoint}: HTTP {status} {response.reason}")
                if last:
                    raise _EndpointFailed(
                        f"{endpoint}: HTTP {status} {response.reason} ({attempts} attempts)"
                    )
                delay = self._retry_after(response) if status in (429, 503) else None
                if delay is not None and delay > self.max_retry_after:
                    raise _EndpointFailed(
                        f"{endpoint}: HTTP {status}, Retry-After {delay:.0f}s is longer than "
                        f"{self.max_retry_after:.0f}s"
                    )
            self._sleep(delay if delay is not None else self._backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff * 2**attempt, self.backoff_max))

    def _retry_after(self, response: requests.Response) -> float | None:
        """Seconds to wait from ``Retry-After``, or None when absent or unreadable."""
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        if value.isdigit():
            return float(value)
        when = _http_date(value)
        if when is None:
            return None
        server_now = _http_date(response.headers.get("Date", ""))
        now = server_now if server_now is not None else self._wall_clock()
        return max(0.0, when - now)


def _http_date(value: str) -> float | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # HTTP-dates are GMT; a naive result means "-0000"
        return None
    return parsed.timestamp()


def _decode(endpoint: str, body: bytes) -> _Fetched:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _EndpointFailed(f"{endpoint}: response is not JSON: {_short(exc)}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("proposals"), list):
        raise _EndpointFailed(f'{endpoint}: response has no "proposals" list')
    return _Fetched(endpoint=endpoint, body=body, proposals=document["proposals"])


def _rows(fetched: list[_Fetched]) -> Iterator[RawRow]:
    row = 0
    for item in fetched:
        for index, proposal in enumerate(item.proposals, start=1):
            row += 1
            if isinstance(proposal, dict):
                yield RawRow(row=row, values=proposal)
            else:
                kind = _JSON_KINDS.get(type(proposal), type(proposal).__name__)
                problem = f"{item.endpoint}: proposal {index} is {kind}, not a JSON object"
                yield RawRow(row=row, values={PROBLEM_KEY: problem})


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."
