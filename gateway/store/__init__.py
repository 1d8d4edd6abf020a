"""The gateway's SQLite store, and the only package that speaks SQL: ``core`` (``Store``:
claims, resolutions, views, quarantine, runs, results, audit), ``schema`` (tables and the
migration of older files), ``claims`` (claim set rows decoded), ``devices`` (``DeviceStore``:
devices, routes, streams, commands), ``runs`` (``SourceRun``: one source run staged and
applied) and ``staging`` (the rows it stages, light enough for a reading process),
``proposals`` (held-back changes and their decisions), ``checkpointer`` (the WAL checkpoint
thread), ``accounts`` (``AccountStore``: the board's logins and sessions), ``listings`` (what
the dispatch board and ``gateway proposals`` list), ``shadow`` (``ShadowStore``: what a shadow
run records) and ``sql`` (the helpers they share). Imports no other wing.
"""
