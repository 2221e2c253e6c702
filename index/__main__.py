"""``python -m index``: see :mod:`index.cli`."""

import sys

from index.cli.commands import main

sys.exit(main())
