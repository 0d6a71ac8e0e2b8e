"""`python -m services.rank`: run the service until SIGTERM (see `--help`)."""

import sys

from services.rank.server import main

sys.exit(main())
