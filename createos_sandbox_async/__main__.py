"""``python -m createos_sandbox_async`` runs the command line (see ``cli/``)."""

from .cli import main

raise SystemExit(main())
