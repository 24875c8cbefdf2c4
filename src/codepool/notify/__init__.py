"""Notifications: the outbox the Lua scripts fill, fanned out into email and webhook
deliveries by a background worker in every app process, retried, dead-lettered.

lua/includes/common.lua (``emitter``) writes an outbox entry in the same atomic step as
the event; ``worker.NotifyWorker`` turns each entry into deliveries (lua/fan_out.lua)
and sends them (``webhook``, ``email``); ``store.DeliveryStore`` is its Redis side.
"""
