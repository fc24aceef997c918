import sys

from poolserver.cli import main

sys.exit(main())
