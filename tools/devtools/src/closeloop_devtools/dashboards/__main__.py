import sys

from closeloop_devtools.dashboards import main

sys.exit(main())
