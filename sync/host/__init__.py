"""What the box's OS offers both shells: the one corner of ``sync`` that does I/O.

``sync/`` itself is pure (``tests/sync/test_purity.py``); the layout is fixed
(``agent/``, ``gateway/``, ``ui/``, ``sync/``), and the gateway, the agent and the tablet app
(``crossdock tablet``) all need the same lock on their store, so it lives below all three
here, in a subpackage no pure module imports. It imports only ``sync.errors``. The installed
package's version, which both shells report, is read here too.

Exports:
    lock -- StoreLock and LockHeld (one process per store: an flock on ``<db>.lock`` naming
            its holder), try_flock (an exclusive flock taken only when free)
    version -- package_version: the installed crossdock's version (status messages, the
               record memory's context)
"""
