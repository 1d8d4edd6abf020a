"""The managed Mosquitto: ``conf`` (``BrokerSettings``, ``BrokerUser``, ``write_config``: the
config, password file and ACL rendered from ``gateway/broker/templates``), ``process``
(``ManagedBroker``: start, stop, kill, restart, supervise), ``tls`` (``make_self_signed``) and
``binaries`` (``find_binary``). Imports ``gateway.config`` and ``gateway.errors`` only.
"""
