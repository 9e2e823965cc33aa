"""`python -m jupyter_openshell` runs the `openshell` CLI. Nothing else lives here."""

import sys

from .cli import main

sys.exit(main())
