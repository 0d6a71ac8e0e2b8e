"""`python -m services.video`: run the service until SIGTERM (see `--help`)."""

import sys

from services.video.server import main

sys.exit(main())
