"""OBD-II over ISO-TP (SAE J1979 services 01, 02, 03, 07, 0A, 09; ISO 15765-2/-4), issue 16.

    pids.py names.py        the standard PIDs: formulas, units, data names (pure)
    messages.py faults.py   requests built, answers parsed and guarded; fault codes and the
                            differ that turns successive reads into changes (pure)
    addressing.py           11-bit and 29-bit identifiers (pure)
    settings.py cost.py     [[obd]] of agent.toml; what a monitor costs in requests/min (pure)
    poller.py               what to ask, when: monitors decide, budget, back-off, awake only (pure)
    link.py kernel.py       ISO-TP: can-isotp's pure-Python stack over python-can, or the kernel
    client.py               one exchange (functional or physical), and the scan
    service.py              the poller thread of one [[obd]] bus: Samples onto the agent's inbox
    twin.py                 an ECU twin for tests, benches and ``simulate --obd-twin``

Only ``link.py``, ``kernel.py`` and what builds on them import ``isotp`` and ``can``; the pure
modules may be imported by the backend (``names.py`` validates monitors on OBD data names).
Errors: ``agent.errors.ObdError`` and ``NegativeAnswer``. Guide: docs/obd.md.
"""
