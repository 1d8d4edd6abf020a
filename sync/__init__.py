"""crossdock's pure core: the model, wire envelopes, clocks, merge and conflict rules, streams.

Nothing in this package does I/O: no sockets, no SQL, no threads, no wall clock. Every function
takes the state, the input and ``now`` and returns what follows. The gateway and the tablet run
the same code, so both always agree on what is a conflict.

Exports:
    model     -- Source, Claim, Resolution, Candidate, Conflict, FieldView, OrderView,
                 Warning, Policy
    envelope  -- the wire envelope and its message kinds (one discriminated union)
    codec     -- encode/decode envelopes; CodecError is the only exception it raises
    hlc       -- hybrid logical clocks
    merge     -- claims + resolutions + policy + now -> views and open conflicts
    merged    -- a merged view as stored and streamed; the one-claim-set shortcut
    rules     -- route checks (shift hours, delivery windows, capacity) -> warnings
    streams   -- per-device gapless sequences, gap detection and repair
    follow    -- the tablet's stream timing: when to ask again, when to report ``applied``
    membroker -- an in-memory MQTT broker core (topic filters, sessions, QoS 1, retained,
                 wills, ACL, faults) for scenario tests; tests/memnet.py gives it threads
    zones     -- check_zone: the one check of a time-zone name (agent config, mappings)
    errors    -- the package's exception tree
    host/     -- NOT pure: the store lock both shells take (``sync.host.lock.StoreLock``);
                 no module above imports it
"""

from sync.errors import CodecError, CrossdockError, SyncError

__all__ = ["CodecError", "CrossdockError", "SyncError"]
