"""``python -m crossbook`` runs the command line."""

from crossbook.service.cli import main

raise SystemExit(main())
