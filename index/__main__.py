"""``python -m index``: see :mod:`index.cli`."""

import sys

from index.cli import main

sys.exit(main())
