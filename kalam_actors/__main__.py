"""``python -m kalam_actors``: the same as the ``kalam-actors`` command."""

import sys

from .cli import main

sys.exit(main())
