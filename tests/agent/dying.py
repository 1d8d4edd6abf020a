"""A tablet agent process that dies (SIGKILL) right after recording a driver action and just
before publishing it: run as ``python -c DIE_BEFORE_PUBLISH CONFIG ORDER``. Used by the agent's
and the system's fault tests."""

from __future__ import annotations

import textwrap

DIE_BEFORE_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys
    from agent.config import load_config
    from agent.service import Agent
    from agent.session import MqttSession

    class DieBeforeDriverEvent:
        # The real session, except that the process dies just before a driver event goes out.
        def __init__(self, inner):
            self.inner = inner
        @property
        def connected(self):
            return self.inner.connected
        def start(self):
            self.inner.start()
        def stop(self, *, final=None):
            self.inner.stop(final=final)
        def publish(self, message):
            if b'"driver_event"' in message.payload:
                os.kill(os.getpid(), signal.SIGKILL)
            return self.inner.publish(message)

    agent = Agent(load_config(sys.argv[1]),
                  transport=lambda settings, a: DieBeforeDriverEvent(MqttSession(settings, a)))
    agent.start()
    assert agent.wait_for(lambda: any(s.order_id == sys.argv[2] for s in agent.route()), 30)
    agent.act("deliver", sys.argv[2])
    """
)
