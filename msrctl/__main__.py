"""`python -m msrctl`."""

from .cli import main

raise SystemExit(main())
