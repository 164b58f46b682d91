"""`python -m msrctl`."""

from .cli.main import main

raise SystemExit(main())
