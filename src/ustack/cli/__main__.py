"""``python -m ustack.cli``: the ``ustack`` command (as ``python -m ustack``)."""

import sys

from ustack.cli import main

sys.exit(main())
