"""Per-device limits on what the gateway takes in (DESIGN.md §6, issue 13).

``TokenBucket`` -- a device may send ``burst`` driver events at once and ``rate`` per second
after that. The gateway never drops the excess: it holds it, tells the tablet (an ``ack`` whose
``delayed`` lists the held event ids), and handles it as tokens come back. Pure: the clock is
passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFERRED_MAX", "EVENT_BURST", "EVENT_RATE_PER_S", "TokenBucket"]

EVENT_RATE_PER_S = 10.0
"""Driver events a device may send per second, sustained. A driver taps a few times a minute;
a tablet back from a shift offline with 500 actions in its outbox is through in under a
minute (``EVENT_BURST`` at once, then this rate)."""

EVENT_BURST = 50
"""Driver events a device may send at once before ``EVENT_RATE_PER_S`` applies."""

DEFERRED_MAX = 1000
"""Events held per device. Past it an event is neither handled nor acked: it stays in the
tablet's outbox and is resent on its next reconnect (still never dropped)."""


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    at: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> bool:
        """Take one token if there is one (refilled at ``rate`` since the last call)."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token, as of the last ``take``."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
