"""Uplink: the durable outbox, the MQTT link and event pump, monitor sync from retained topics."""
