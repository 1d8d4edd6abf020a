"""The running gateway's stream side.

    service  -- GatewayService: the worker thread that owns the store's stream side (its
                loop, status, housekeeping), one object over its parts:
    inbound  -- what a message from a tablet or dispatch does: authorization, driver events
                within their rate, commands
    outflow  -- stream entries out: coalescing, catch-up, gap repair
    base     -- the parts' shared state
    wire     -- stream messages composed around stored bodies
    views    -- ``refresh``: claims -> merged views -> device streams
    commands -- dispatch commands and driver events
    link     -- ``Link``/``LinkMaker``: the seam ``GatewayService`` takes its link through
    mqtt     -- ``MqttLink``, the default link
    status   -- source freshness, the broker link's state
    limits, watch -- the driver-event rate; the hooks a harness watches the streams by
Imports ``gateway.store`` and ``gateway.ingest.mapping``.
"""
