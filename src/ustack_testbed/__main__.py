"""``python -m ustack_testbed {list,reap}`` (``make clean-net`` runs ``reap``)."""

import sys

from ustack_testbed import main

sys.exit(main())
