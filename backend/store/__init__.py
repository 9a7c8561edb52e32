"""The store: records and the ``Store`` interface (``records``), on SQLite (``sqlite``, the
embedded default) or PostgreSQL (``postgres``, several workers on several machines);
``factory.open_store`` picks one from the configuration."""
