"""The driver's tablet app (Kivy), over the agent's API only (no MQTT, no SQL here).

Modules:
    viewmodels -- what each screen shows, as plain data (no Kivy; tested without a window)
    theme      -- the daylight theme's colours (contrast >= 7:1) and glove sizes in mm
    widgets    -- Kivy building blocks: Tap (a sized target), Text, Badge, Panel
    screens    -- route, stop, conflict, refused, forms; TabletRoot binds them to an Agent
    app        -- TabletApp and run_tablet (agent + app in one process)
    cli        -- ``crossdock tablet``

Only ``widgets``, ``screens`` and ``app`` import Kivy, and only after ``cli.prepare_kivy``.
"""
