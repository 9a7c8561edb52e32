"""edgemon agent: the vehicle-side event engine.

Importing this package (and its pure modules: ``model``, ``state``, ``wire``, ``monitors``) pulls in
no I/O library, so the backend can share the contract without python-can, pyserial or paho.
"""

__version__ = "0.1.0"
