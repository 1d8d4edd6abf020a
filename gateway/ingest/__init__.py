"""Legacy sources in: ``base`` (``Export``, ``RawRow``, the ``Adapter`` protocol), the adapters
``foxpro`` (over the DBF reader ``dbf``, its header side ``dbf_header``, its code pages
``codepages`` and its value decoders ``dbf_decode``), ``csvdrop``, ``odbc`` and ``http``;
``mapping`` (a legacy system's mapping file, ``load_mapping``, ``source_mapping``);
``validate`` (rows -> values or quarantine) and ``quick`` (its one-call path for a clean row);
``pipeline`` (``ingest_source``: one run, read to claims) and ``parallel`` (reading one large
table in several processes); ``inspect`` (what a file holds). Imports ``gateway.store`` and
``gateway.config``; nothing here imports another wing.
"""
