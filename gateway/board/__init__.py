"""The dispatch board: a web page served from the gateway box (DESIGN §2, issue 14).

Exports ``BoardServer`` (serve ``[board]``), ``Board`` and ``create_app`` (the ASGI app, for
tests), ``Reply`` and ``mqtt_commands`` (how the board acts: the ``crossdock dispatch`` path).
Routes and their rules: ``gateway.board.app``; live updates: ``gateway.board.hub``; what is
shown: ``gateway.board.state``.
"""

from gateway.board.app import Board, Reply, create_app, mqtt_commands
from gateway.board.server import BoardServer

__all__ = ["Board", "BoardServer", "Reply", "create_app", "mqtt_commands"]
