"""The headless tablet agent: the driver's route in SQLite, synced over MQTT, offline-first.

Modules:
    config   -- AgentConfig and load_config (the TOML file the gateway writes per device)
    errors   -- AgentError and its tree (ConfigError, StoreError, ActionError, SessionError)
    model    -- RouteStop, LocalAction, OutboxItem, RefusedAction, SyncStatus, Change: what
                callers get back
    store    -- the tablet's SQLite (the only package importing sqlite3 / sqlite-utils)
    session  -- the MQTT session over paho (the only module importing paho); Transport seam
    engine   -- the stream protocol engine: session calls, what goes back (timing: sync.follow)
    ticker   -- the engine's ticker thread: sleeps as sync.follow.wake says, nudged by messages
    snapshots -- a snapshot sent in parts, put together
    service  -- Agent: the API the UI calls and ``crossdock agent run`` runs
    route    -- the route the driver sees: views with the driver's own actions overlaid (pure)
    actions  -- a driver's tap as the event the gateway gets, checked against the view (pure)
    cli      -- the ``crossdock agent`` command group

The UI imports ``Agent`` from ``agent.service`` and the models from ``agent.model``.
"""
