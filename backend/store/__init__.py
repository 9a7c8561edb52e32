"""The store: records and the Store interface, the SQLite implementation."""
