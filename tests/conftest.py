"""Suite-wide test settings: the hypothesis profiles.

`ci` (the default) derandomizes, so every run of `make test` explores the same examples
and a red build is reproducible from the log alone; `soak` (`HYPOTHESIS_PROFILE=soak`,
used by `make soak`) searches with fresh randomness each run, and the expensive fault
schedules of `tests/faults/` run several times more examples under it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("soak", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(PROFILE)
