"""Litestar controllers: thin handlers that parse, authorize, call the store, answer."""
