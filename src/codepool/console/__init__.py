"""The web console, served by codepool itself at ``/console`` (see routes.py)."""

from codepool.console.routes import ROUTES

__all__ = ["ROUTES"]
