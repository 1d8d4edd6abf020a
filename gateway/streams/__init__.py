"""The running gateway's stream side: ``service`` (``GatewayService``: the worker thread that
owns the store's stream side), ``wire`` (stream messages composed around stored bodies),
``views`` (``refresh``: claims -> merged views -> device streams), ``commands`` (dispatch
commands and driver events), ``link`` (``Link``/``LinkMaker``: the seam ``GatewayService``
takes its link through), ``mqtt`` (``MqttLink``, the default) and ``status`` (source
freshness).
Imports ``gateway.store`` and ``gateway.ingest.mapping``.
"""
