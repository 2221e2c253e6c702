"""``python -m bundle``: see bundle/commands.py."""

import sys

from bundle.commands import main

sys.exit(main())
