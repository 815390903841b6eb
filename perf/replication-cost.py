#!/usr/bin/env python3
"""Cost of replication: broker CPU per message and acks=all latency, RF=3 against RF=1.

Starts the fault checker's three nodes (127.0.0.1, .2, .3, one core each; as each pins its one
shard to the first CPU it may use, all three share that CPU unless run under taskset), then runs
`sluice bench produce` against them at a fixed rate, alternately on a topic with one replica
per partition and on one with three, --rounds times each:

  cpu/msg   the three brokers' CPU time (user + system, /proc/PID/stat) while the bench ran,
            divided by the messages it had acknowledged (warm-up included, as is its CPU)
  latency   the bench's acknowledgement latency percentiles (after warm-up, from each message's
            intended send time)

Same workload both ways: 6 partitions, 1 KiB values, acks=all, linger 5 ms, one producer.

Usage: perf/replication-cost.py [--binary target/release/sluice] [--rate 10000]
                                [--duration-s 20] [--rounds 2] [--out-dir DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "chaos"))
sys.path.insert(0, os.path.dirname(__file__))
from cluster_common import cpu_seconds, wait_for_brokers  # noqa: E402
from chaos import NODES, Cluster  # noqa: E402

from confluent_kafka.admin import AdminClient  # noqa: E402



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/sluice")
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--duration-s", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out-dir")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    work = tempfile.mkdtemp(prefix="sluice-rf-cost-")
    cluster = Cluster(binary, work)
    rows = []
    try:
        for node in NODES:
            cluster.start(node)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap(), "log_level": 2})
        wait_for_brokers(admin)
        for round_number in range(args.rounds):
            for rf in (1, 3):
                topic = f"rf{rf}-{round_number}"
                result_path = os.path.join(work, f"{topic}.json")
                pids = [cluster.processes[n].pid for n in NODES]
                before = sum(cpu_seconds(pid) for pid in pids)
                bench = subprocess.run(
                    [binary, "bench", "produce", "--bootstrap", "127.0.0.1:29292",
                     "--topic", topic, "--create-topic", "--partitions", "6",
                     "--replication-factor", str(rf), "--acks", "all",
                     "--message-bytes", "1024", "--linger-ms", "5",
                     "--rate", str(args.rate), "--duration-s", str(args.duration_s),
                     "--warmup-s", "2", "--progress-ms", "0", "--json", result_path,
                     "--label", f"RF={rf} at {args.rate} msg/s"],
                    capture_output=True, text=True)
                cpu = sum(cpu_seconds(pid) for pid in pids) - before
                if bench.returncode != 0:
                    print(bench.stdout, bench.stderr)
                    raise SystemExit(f"bench on {topic} failed")
                with open(result_path) as result_file:
                    result = json.load(result_file)
                produce = result["produce"]
                acked = produce["acked_messages"]
                latency = produce["ack_latency_us"]
                row = {
                    "rf": rf,
                    "round": round_number,
                    "acked_messages": acked,
                    "messages_per_s": round(produce["throughput"]["messages_per_s"]),
                    "broker_cpu_s": round(cpu, 2),
                    "broker_cpu_us_per_msg": round(1e6 * cpu / acked, 2),
                    "ack_p50_us": latency["p50"],
                    "ack_p99_us": latency["p99"],
                    "ack_p99_9_us": latency["p99_9"],
                }
                rows.append(row)
                print(f"RF={rf} round {round_number}: {row['messages_per_s']} msg/s, "
                      f"{row['broker_cpu_us_per_msg']} µs broker CPU/msg, ack p50 "
                      f"{latency['p50']} µs p99 {latency['p99']} µs p99.9 {latency['p99_9']} µs",
                      flush=True)
                if args.out_dir:
                    os.makedirs(args.out_dir, exist_ok=True)
                    shutil.copy(result_path, os.path.join(args.out_dir, f"{topic}.json"))
    finally:
        cluster.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    per_rf = {}
    for rf in (1, 3):
        mine = [r for r in rows if r["rf"] == rf]
        per_rf[rf] = sum(r["broker_cpu_us_per_msg"] for r in mine) / len(mine)
    summary = {
        "binary": args.binary,
        "rate": args.rate,
        "rows": rows,
        "cpu_per_msg_ratio_rf3_over_rf1": round(per_rf[3] / per_rf[1], 2),
    }
    print(json.dumps({"cpu_per_msg_ratio_rf3_over_rf1": summary["cpu_per_msg_ratio_rf3_over_rf1"]}))
    if args.out_dir:
        with open(os.path.join(args.out_dir, "summary.json"), "w") as out:
            json.dump(summary, out, indent=2)


if __name__ == "__main__":
    main()
