"""Helpers the perf scripts share: the fault checker's three-node cluster, started and
waited for, and a process's CPU time."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "chaos"))
from chaos import NODES  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of `pid` so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def wait_for_brokers(admin, timeout_s=60):
    """Waits until Metadata lists every node of the cluster."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if len(admin.list_topics(timeout=5).brokers) == len(NODES):
                return
        except Exception:  # noqa: BLE001 - the cluster is still starting
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the cluster did not start")
        time.sleep(0.5)
