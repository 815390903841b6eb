#!/usr/bin/env python3
"""Failover time of a three-node cluster, as producers see it.

Runs the fault checker's cluster (three `sluice serve` nodes on 127.0.0.1, .2 and .3, one core
each) with a topic of 6 partitions at replication factor 3 and its idempotent acks=all
producers (confluent-kafka, linger 5 ms, retry.backoff.ms 100 unless --retry-backoff-ms), and every --interval-s seconds
takes down the node that leads the most partitions:

  kill     kill -9, started again --down-s seconds later
  restart  SIGTERM (controlled shutdown: leadership is handed over first), started again at once

For each fault and each partition the node led just before it, the gap is the time between the
partition's last acknowledgement before the fault and its first one after: how long producers
of that partition waited. One figure per fault is the longest gap among the partitions it hit;
the summary gives their p50, p99 and maximum.

Usage: perf/failover.py [--binary target/release/sluice] [--fault kill] [--faults 24]
                        [--interval-s 10] [--down-s 3] [--retry-backoff-ms 100]
                        [--out summary.json]
Needs confluent-kafka.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "chaos"))
sys.path.insert(0, os.path.dirname(__file__))
from cluster_common import wait_for_brokers  # noqa: E402
from chaos import NODES, PARTITIONS, TOPIC, Cluster, History, produce  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def leaders(admin):
    """partition -> leader node id, as a broker answers Metadata (None if it cannot)."""
    try:
        topic = admin.list_topics(TOPIC, timeout=5).topics[TOPIC]
    except Exception:  # noqa: BLE001 - a broker may be the one just killed
        return None
    if topic.error is not None or len(topic.partitions) != PARTITIONS:
        return None
    return {p: topic.partitions[p].leader for p in topic.partitions}


def percentile(values, q):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/sluice")
    parser.add_argument("--fault", choices=["kill", "restart"], default="kill")
    parser.add_argument("--faults", type=int, default=24)
    parser.add_argument("--interval-s", type=float, default=10)
    parser.add_argument("--down-s", type=float, default=3)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--retry-backoff-ms", type=int, default=100,
                        help="the producers' retry.backoff.ms (librdkafka's default: 100)")
    parser.add_argument("--out")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-failover-")
    cluster = Cluster(os.path.abspath(args.binary), work)
    history = History()
    stop = threading.Event()
    faults = []
    try:
        for node in NODES:
            cluster.start(node)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap(), "log_level": 2})
        wait_for_brokers(admin)
        deadline = time.monotonic() + 60
        while True:
            try:
                futures = admin.create_topics(
                    [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3)],
                    operation_timeout=30)
                for future in futures.values():
                    future.result()
                break
            except Exception as error:  # noqa: BLE001 - the cluster is still starting
                if time.monotonic() > deadline:
                    raise SystemExit(f"cannot create the topic: {error}")
                time.sleep(1)
        overrides = {"retry.backoff.ms": args.retry_backoff_ms}
        producers = [threading.Thread(target=produce,
                                      args=(cluster, history, stop, i, overrides))
                     for i in range(args.producers)]
        for thread in producers:
            thread.start()
        time.sleep(args.interval_s)
        while len(faults) < args.faults:
            led = leaders(admin)
            if led is None:
                time.sleep(1)
                continue
            counts = {n: sum(1 for leader in led.values() if leader == n) for n in NODES}
            victim = max(NODES, key=lambda n: (counts[n], -len([f for f in faults
                                                                 if f["node"] == n])))
            hit = sorted(p for p, leader in led.items() if leader == victim)
            if not hit:
                time.sleep(1)
                continue
            at = time.monotonic()
            if args.fault == "kill":
                cluster.kill9(victim)
                time.sleep(args.down_s)
                cluster.start(victim)
            else:
                status = cluster.terminate(victim)
                cluster.start(victim)
                if status != 0:
                    print(f"node {victim} exited with {status} on SIGTERM", flush=True)
            faults.append({"node": victim, "at": at, "partitions": hit})
            time.sleep(args.interval_s)
        stop.set()
        for thread in producers:
            thread.join()
    finally:
        stop.set()
        cluster.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    per_fault = []
    for fault in faults:
        gaps = {}
        for partition in fault["partitions"]:
            acks = history.partition_acks.get(partition, [])
            before = [t for t in acks if t <= fault["at"]]
            after = [t for t in acks if t > fault["at"]]
            if before and after:
                gaps[partition] = round(min(after) - max(before), 3)
        fault["gaps_s"] = gaps
        if gaps:
            per_fault.append(max(gaps.values()))
        print(f"{args.fault} node {fault['node']}: partitions {fault['partitions']} "
              f"gaps {gaps}", flush=True)
    summary = {
        "binary": args.binary,
        "fault": args.fault,
        "retry_backoff_ms": args.retry_backoff_ms,
        "faults": len(faults),
        "acknowledged": len(history.acked),
        "failed_deliveries": history.failed,
        "longest_gap_per_fault_s": {
            "p50": percentile(per_fault, 0.5) if per_fault else None,
            "p99": percentile(per_fault, 0.99) if per_fault else None,
            "max": max(per_fault) if per_fault else None,
        },
        "fault_history": [{k: v for k, v in f.items() if k != "at"} for f in faults],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "fault_history"}))
    if args.out:
        with open(args.out, "w") as out:
            json.dump(summary, out, indent=2)


if __name__ == "__main__":
    main()
