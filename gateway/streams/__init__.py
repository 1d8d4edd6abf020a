"""The running gateway's stream side: ``service`` (``GatewayService``: the worker thread that
owns the store's stream side; its parts ``inbound`` (messages from tablets and dispatch:
authorization, driver events within their rate, commands), ``outflow`` (entries out:
coalescing, catch-up, gap repair) and ``base`` (their shared state)), ``wire`` (stream messages composed around stored bodies),
``views`` (``refresh``: claims -> merged views -> device streams), ``commands`` (dispatch
commands and driver events), ``link`` (``Link``/``LinkMaker``: the seam ``GatewayService``
takes its link through), ``mqtt`` (``MqttLink``, the default) and ``status`` (source
freshness).
Imports ``gateway.store`` and ``gateway.ingest.mapping``.
"""
