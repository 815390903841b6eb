#!/usr/bin/env python3
"""Idle cost of a three-node cluster as its partition count grows.

Starts three `sluice serve` nodes on 127.0.0.1, .2 and .3 (the fault checker's cluster, one core
each), then for each step creates topics (replication factor 3) until the cluster holds the
step's number of partitions besides `__consumer_offsets`, waits for them to settle, and
measures for --measure-s seconds with no client traffic:

  cpu      the three brokers' CPU time (user + system, /proc/PID/stat) per second, in ms
  bytes    bytes sent per second on node-to-node connections (the CONTROLLER port), summed
           over every such socket (`ss -tin`, bytes_sent): what the node-to-node messages
           carry, whatever they are
  segments TCP segments sent per second on those sockets (segs_out); a link writes every
           frame queued for its peer at once, so this counts writes more than messages

Usage: perf/idle-cluster.py [--binary target/release/sluice] [--steps 0,100,1000]
                            [--settle-s 20] [--measure-s 30] [--set KEY=VALUE ...]
(--set is passed to every node, e.g. log.preallocate.bytes=1048576 for a binary from before
preallocation grew in steps: 3,000 replicas would otherwise preallocate 64 MiB each.)
Needs confluent-kafka and `ss` (iproute2). Prints one line per step and a JSON summary.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "chaos"))
sys.path.insert(0, os.path.dirname(__file__))
from cluster_common import cpu_seconds, wait_for_brokers  # noqa: E402
from chaos import CONTROLLER_PORT, NODES, Cluster  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402



def node_links():
    """(segments, bytes) sent so far on every established socket of the CONTROLLER port."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established",
         f"( sport = :{CONTROLLER_PORT} or dport = :{CONTROLLER_PORT} )"],
        capture_output=True, text=True, check=True).stdout
    segments = sum(int(n) for n in re.findall(r"\bsegs_out:(\d+)", out))
    sent = sum(int(n) for n in re.findall(r"\bbytes_sent:(\d+)", out))
    return segments, sent


def measure(cluster, seconds):
    pids = {n: cluster.processes[n].pid for n in NODES}
    cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
    seg0, bytes0 = node_links()
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    cpu1 = {n: cpu_seconds(pid) for n, pid in pids.items()}
    seg1, bytes1 = node_links()
    per_node = {n: 1000 * (cpu1[n] - cpu0[n]) / elapsed for n in NODES}
    return {
        "cpu_ms_per_s": round(sum(per_node.values()), 1),
        "cpu_ms_per_s_by_node": {n: round(v, 1) for n, v in per_node.items()},
        "segments_per_s": round((seg1 - seg0) / elapsed, 1),
        "bytes_per_s": round((bytes1 - bytes0) / elapsed, 1),
        "seconds": round(elapsed, 1),
    }


def create(admin, name, partitions):
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=3)],
        operation_timeout=60)
    for future in futures.values():
        future.result()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/sluice")
    parser.add_argument("--steps", default="0,100,1000")
    parser.add_argument("--settle-s", type=float, default=20)
    parser.add_argument("--measure-s", type=float, default=30)
    parser.add_argument("--out")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every node")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' logs and data")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    work = tempfile.mkdtemp(prefix="sluice-idle-")
    cluster = Cluster(os.path.abspath(args.binary), work)
    for setting in args.set:
        for node in NODES:
            cluster.args[node] += ["--set", setting]
    results = []
    try:
        for node in NODES:
            cluster.start(node)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        wait_for_brokers(admin)
        hosted = 0
        for step in steps:
            while hosted < step:
                count = min(100, step - hosted)
                create(admin, f"idle-{hosted}", count)
                hosted += count
            time.sleep(args.settle_s)
            result = {"partitions": step, **measure(cluster, args.measure_s)}
            results.append(result)
            print(f"{step:>6} partitions (+ __consumer_offsets): "
                  f"{result['cpu_ms_per_s']:>7} ms CPU/s over 3 nodes "
                  f"{result['cpu_ms_per_s_by_node']}, "
                  f"{result['bytes_per_s']:>9} node-to-node bytes/s "
                  f"in {result['segments_per_s']} segments/s", flush=True)
    finally:
        cluster.stop_all()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    summary = {"binary": args.binary, "steps": results}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as out:
            json.dump(summary, out, indent=2)


if __name__ == "__main__":
    main()
