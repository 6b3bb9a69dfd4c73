"""The telephony edge: Twilio webhooks and Media Streams in, worker calls out.

A small ASGI app that imports nothing of the worker's engines: it answers Twilio within its
deadline from what the worker (this product's HTTP API, a RunPod endpoint or a Modal endpoint)
can give in time, and falls back to ``<Say>`` when it cannot.
"""
