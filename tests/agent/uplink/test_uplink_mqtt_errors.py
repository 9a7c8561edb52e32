"""Connect-error wording (a pure part of agent.uplink.mqtt); the delays are agent.backoff's."""

from __future__ import annotations

import ssl

from agent.uplink.mqtt import describe_connect_error


def test_connect_errors_read_clearly() -> None:
    refused = describe_connect_error(ConnectionRefusedError(111, "refused"), "h", 1)
    assert refused == "connection to h:1 refused (broker down?)"
    unknown = ssl.SSLCertVerificationError(1, "certificate verify failed")
    unknown.verify_message = "unable to get local issuer certificate"
    text = describe_connect_error(unknown, "h", 8883)
    assert "not trusted" in text and "local issuer" in text and "mqtt.ca_file" in text
    assert "timed out" in describe_connect_error(TimeoutError(), "h", 1)
