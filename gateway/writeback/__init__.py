"""Driver results back to the legacy system: ``flush`` (``flush_writeback``: pending results,
each written once) over the writers ``csvfile``, ``dbffile`` and ``odbc``. Imports
``gateway.store`` and, for the legacy zone and ODBC connection strings, ``gateway.ingest``.
"""
