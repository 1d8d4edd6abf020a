"""The depot gateway: legacy sources in, validated claims, merged views, device streams out.

Modules: ``config`` (gateway.toml), ``mapping`` (a legacy system's mapping file), ``validate``
(rows → values or quarantine), ``ingest/`` (source adapters and the run pipeline), ``store``
(SQLite), ``views`` (merge → views → device streams), ``broker`` (managed Mosquitto),
``service`` (MQTT and the scheduler), ``cli`` (the ``gateway`` and ``dispatch`` commands).
"""
