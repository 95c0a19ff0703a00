"""`python -m mtr_hpc.cli ...` is `mtr ...`; what launchers that take a module need
(`torchrun -m mtr_hpc.cli grpo --config ...`)."""

import sys

from . import main

sys.exit(main())
