"""Ingest: MQTT events admitted (guard), rate-limited (quota) and committed (intake)."""
