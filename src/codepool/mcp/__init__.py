"""The agent tools over MCP: ``/mcp`` in the app (mount.py) and ``codepool mcp`` (stdio.py)."""
