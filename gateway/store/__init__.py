"""The gateway's SQLite store, and the only package that speaks SQL: ``core`` (``Store``:
the connection, transactions, meta, audit; one handle on ``inputs`` (claim sets, resolutions),
``views`` (the dirty queue, merged views) and ``sources`` (source runs, quarantine, source
state, the write-back queue)), ``schema`` (tables and the migration of older files),
``claims`` (claim set rows decoded), ``devices`` (``DeviceStore``: devices, routes, streams,
commands), ``runs`` (``SourceRun``: one source run staged and
applied), ``holds`` (a suspect run held, not applied), ``claimsets`` (the claim sets a run
writes) and ``staging`` (the rows it stages,
light enough for a reading process),
``proposals`` (held-back changes and their decisions), ``checkpointer`` (the WAL checkpoint
thread), ``accounts`` (``AccountStore``: the board's logins and sessions), ``listings`` (what
the dispatch board and ``gateway proposals`` list), ``shadow`` (``ShadowStore``: what a shadow
run records) and ``sql`` (the helpers they share). Imports no other wing.
"""
