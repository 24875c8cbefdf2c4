"""The client side of the ``codepool`` command line: verbs that talk to a running service.

``http`` is the HTTP client (URL and key from the settings), ``output`` prints tables or
JSON, ``progress`` draws progress bars on a terminal, ``upload`` streams code files,
``base`` and ``options`` hold what the verbs share, and ``verbs`` registers them all:
``projects`` (and keys), ``pools``, ``webhooks``, ``codes``, ``rewards``, ``till``,
``trace`` and ``stats``, each the verbs on what it is named for. docs/cli.md is the
user's guide.
"""
