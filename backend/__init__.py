"""edgemon backend: MQTT ingest, webhook delivery with retry policies, and the monitor API."""

__version__ = "0.1.0"
