"""`python -m dreammix_batch`: the same as the `dreammix-batch` command."""

import sys

from .cli import main

sys.exit(main())
