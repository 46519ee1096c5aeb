"""Faults the tests inject into a real process, and nothing else enables.

``IMAGE_SERVICE_TEST_FAULT=kill_after_commit``: the process SIGKILLs itself between a change's
commit and its webhook jobs' send, the one moment the outbox exists for (``tests/integration/
test_outbox.py``). Only the composition root reads it, from the environment, and a process
started with it says so, loudly, before it serves anything.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping

from image_service.domain.events import AfterCommit
from image_service.domain.ports import Owed

log = logging.getLogger(__name__)

FAULT_VARIABLE = "IMAGE_SERVICE_TEST_FAULT"
KILL_AFTER_COMMIT = "kill_after_commit"


def after_commit_fault(environ: Mapping[str, str] = os.environ) -> AfterCommit | None:
    """The hook ``ImageEvents`` calls between a commit and its send, if a test asked for one."""
    fault = environ.get(FAULT_VARIABLE)
    if fault is None:
        return None
    if fault != KILL_AFTER_COMMIT:
        raise ValueError(f"{FAULT_VARIABLE}: unknown fault {fault!r}")
    log.warning("%s=%s: this process kills itself after its first commit", FAULT_VARIABLE, fault)

    def kill(_owed: Owed) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    return kill
