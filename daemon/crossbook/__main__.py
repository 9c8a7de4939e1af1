"""``python -m crossbook`` runs the command line."""

from crossbook.cli import main

raise SystemExit(main())
