"""The client side of the ``codepool`` command line: verbs that talk to a running service.

``http`` is the HTTP client (URL and key from the settings), ``output`` prints tables or
JSON, ``progress`` draws progress bars on a terminal, ``upload`` streams code files,
``verbs`` and ``codes`` register the subcommands. docs/cli.md is the user's guide.
"""
