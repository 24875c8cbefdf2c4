"""``python -m codepool``: the same as the ``codepool`` command."""

from codepool.cli import main

raise SystemExit(main())
