"""The uplink tests share the daemon tests' fixtures (events, MQTT collectors)."""

from tests.agent.daemon.conftest import collector_factory, event_factory  # noqa: F401
