"""The dispatch board: a web page served from the gateway box (DESIGN §2, issue 14).

``server`` (``BoardServer``: serve ``[board]`` from the gateway's process), ``app``
(``create_app``: the ASGI app and its routes, by panel), ``auth`` (logins, sessions, CSRF: the
guard of every route), ``page`` (``Board``: templates, rendering, a store per thread),
``commands`` (``Reply``, ``mqtt_commands``: how the board acts, the ``crossdock dispatch``
path), ``hub`` (live updates to open pages), ``state`` (what is shown) and ``cli``
(``crossdock board``, ``gateway users``, ``gateway proposals``, ``gateway report``). Imports
``gateway.store``, ``gateway.streams.status``, ``gateway.shadow`` and ``gateway.dispatch``;
nothing here is imported until used (the CLI loads ``cli`` alone, not Starlette).
"""
