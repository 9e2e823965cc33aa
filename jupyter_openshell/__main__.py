"""`python -m jupyter_openshell` runs the `openshell` CLI. Nothing else lives here.
It must never hold logic of its own.
"""

import sys

from .cli import main

sys.exit(main())
