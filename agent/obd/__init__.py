"""OBD-II over ISO-TP (SAE J1979 services 01, 02, 03, 07, 0A, 09; ISO 15765-2/-4), issue 16.

    pids.py names.py        the standard PIDs: formulas, units, data names (pure)
    messages.py             requests built, answers parsed and guarded (pure)
    faults.py               fault codes: P/C/B/U decoding, the differ that makes events (pure)
    addressing.py           11-bit and 29-bit identifiers
    link.py                 ISO-TP over python-can (can-isotp's pure-Python stack) or the kernel
    client.py               scan: ECUs, supported PIDs, VIN, names, codes
    poller.py               what to ask, when: monitors decide, budget, back-off, awake only
    twin.py                 an ECU twin for tests and ``simulate``

Only ``link.py`` (and what builds on it) imports ``isotp`` and ``can``; the rest is pure and the
backend may import ``names.py`` to validate monitors on OBD data names.
"""
