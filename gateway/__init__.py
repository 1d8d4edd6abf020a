"""The depot gateway: legacy sources in, validated claims, merged views, device streams out.

Wings (each package's ``__init__`` says what it holds):

* ``ingest/`` -- source adapters (FoxPro, CSV drops, ODBC, HTTP), mapping files, row
  validation, the run pipeline and its parallel readers, ``inspect``.
* ``store/`` -- the SQLite store: core, schema and migrations, claim decoding, devices and
  streams, source runs, proposals, the WAL checkpointer. Only this package speaks SQL.
* ``broker/`` -- the managed Mosquitto: config/ACL rendering, the process, TLS certificates.
* ``writeback/`` -- driver results back to the legacy system (CSV, DBF, ODBC).
* ``streams/`` -- the running gateway's worker, the wire encoding, views, dispatch commands,
  the MQTT link, source status.

At the top: ``config`` (gateway.toml) and ``errors`` (the exception tree), which every wing may
import; ``cli`` (the ``gateway`` commands), ``dispatch`` (the ``dispatch`` commands), ``runner``,
``scheduler``, ``setup``, ``sample`` and ``demo``, which import the wings and are imported by
none of them.
"""
