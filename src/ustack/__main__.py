import sys

from ustack.cli import main

sys.exit(main())
