"""What this box's operating system offers the gateway and the agent: one process per store
(``host.lock``) and a child process that ends with its parent (``host.child``).

It sits below ``gateway/`` and ``agent/`` (both import it; ``ui/`` reaches it through the
agent's CLI) and imports only ``sync.errors``, so no arrow points up. Linux only, as crossdock's
depot box and tablets are.

    StoreLock, LockHeld      -- host.lock
    die_with_parent          -- host.child
"""

from host.child import die_with_parent
from host.lock import LockHeld, StoreLock

__all__ = ["LockHeld", "StoreLock", "die_with_parent"]
