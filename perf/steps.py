#!/usr/bin/env python3
"""Steps in acknowledgement latency at a fixed rate under load (issue 12's half-rate target).

Sluice (`serve --cores 1`) at a fixed rate, 8 producers, 1 KiB values, acks=all, under
conditions that may each add a step of their own, in interleaved rounds (every condition once
per round, a fresh broker and data directory per run, so a noisy hour hits all conditions):

- base: one partition, default segments;
- segments-16m: 16 MiB segments, rolled about nine times a second, nothing deleted;
- retention-1s: 16 MiB segments, `log.retention.bytes` 64 MiB checked once a second (about nine
  segments deleted per pass);
- retention-100ms: the same bytes deleted in ten passes a second (about one per pass);
- producers-50: 50 producers sharing the same rate;
- keyed-8-partitions: random keys over 8 partitions.

Per condition it reports the median, lowest and highest p99 and p99.99 over the rounds and the
broker's CPU per message (user + system of all its threads, io_uring workers included, from
/proc). A step is a condition whose median sits above base's spread. With `--peers`, Tansu's
memory engine (no disk) runs the conditions that do not depend on storage at the same rate with
the same client: a step there too is the client's or the machine's, not Sluice's.

Usage: perf/steps.py --binary target/release/sluice [--rate 150000] [--rounds 5]
       [--duration-s 10] [--conditions base,retention-1s,...] [--peers] [--out F.json] [--smoke]
--smoke: one short round at a low rate: a check that the script runs, not a measurement.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from latency import (TANSU, add_load_arguments, cpu_seconds, free_port,  # noqa: E402
                     wait_for_port)

RETENTION = ["log.segment.bytes=16777216", "log.retention.bytes=67108864"]
# name: (bench flags, Sluice settings, meaningful for a broker without a disk)
CONDITIONS = {
    "base": ([], [], True),
    "segments-16m": ([], ["log.segment.bytes=16777216"], False),
    "retention-1s": ([], RETENTION + ["log.retention.check.interval.ms=1000"], False),
    "retention-100ms": ([], RETENTION + ["log.retention.check.interval.ms=100"], False),
    "producers-50": (["--producers", "50"], [], True),
    "keyed-8-partitions": (["--partitions", "8", "--keys", "random"], [], True),
}
PERCENTILES = ("p50", "p99", "p99_9", "p99_99")


def run_once(command, port, binary, args, bench_flags):
    """Starts a broker, runs one measured bench against it, stops it. Percentiles in ms and
    the broker's CPU per message over the whole bench (warm-up included)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        cpu = cpu_seconds(process.pid)
        with tempfile.NamedTemporaryFile(suffix=".json") as result:
            flags = bench_flags if "--producers" in bench_flags else (
                ["--producers", str(args.producers)] + bench_flags)
            bench = subprocess.run(
                [binary, "bench", "produce", "--bootstrap", f"127.0.0.1:{port}",
                 "--topic", "steps", "--create-topic", "--message-bytes", str(args.size),
                 "--acks=-1", "--rate", str(args.rate), "--duration-s", str(args.duration_s),
                 "--warmup-s", str(args.warmup_s), "--progress-ms", "0",
                 "--json", result.name] + flags,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if bench.returncode != 0:
                sys.exit(f"bench failed ({bench.returncode}): {bench.stderr}")
            report = json.load(open(result.name))
        cpu = cpu_seconds(process.pid) - cpu
    finally:
        process.kill()
        process.wait()
    latency = report["produce"]["ack_latency_us"]
    row = {name: round(latency[name] / 1000, 3) for name in PERCENTILES}
    sent = latency["count"] + int(args.warmup_s * args.rate)
    row["msgs_per_s"] = round(latency["count"] / args.duration_s)
    row["broker_cpu_us_per_msg"] = round(cpu / max(sent, 1) * 1e6, 2)
    return row


def sluice_command(binary, base, port, settings):
    data = os.path.join(base, "data")
    shutil.rmtree(data, ignore_errors=True)
    # Deleting the last run's data queues discards and journal work; let the disk settle.
    subprocess.run(["sync"], check=False)
    time.sleep(2)
    return ([binary, "serve", "--cores", "1", "--data-dir", data,
             "--listen", f"127.0.0.1:{port}"]
            + [arg for setting in settings for arg in ("--set", setting)])


def tansu_command(port):
    return [TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
            "--storage-engine", "memory://tansu/"]


def summarize(rows):
    summary = {"runs": len(rows)}
    for name in ("p99", "p99_99", "broker_cpu_us_per_msg"):
        values = [row[name] for row in rows]
        summary[name] = {"median": round(statistics.median(values), 3),
                         "low": min(values), "high": max(values)}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser, rate=150000, duration_s=10)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--peers", action="store_true",
                        help="also Tansu's memory engine, for the conditions without storage")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.duration_s, args.warmup_s, args.rounds = 2000, 1, 0.5, 1
    conditions = args.conditions.split(",")
    unknown = [name for name in conditions if name not in CONDITIONS]
    if unknown:
        sys.exit(f"unknown conditions {unknown}; known: {', '.join(CONDITIONS)}")
    if args.peers and not os.access(TANSU, os.X_OK):
        sys.exit(f"{TANSU} is missing (perf/install-peers.sh)")
    binary = os.path.abspath(args.binary)
    base = tempfile.mkdtemp(prefix="sluice-steps-", dir=args.data_dir or os.getcwd())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout
    result = {"machine": platform.node(), "kernel": platform.release(),
              "commit": commit.strip(), "rate": args.rate, "producers": args.producers,
              "size": args.size, "duration_s": args.duration_s, "rounds": args.rounds,
              "smoke": args.smoke, "runs": []}
    try:
        for round_index in range(args.rounds):
            for name in conditions:
                bench_flags, settings, diskless = CONDITIONS[name]
                brokers = [("sluice", None)] + ([("tansu_memory", None)]
                                                if args.peers and diskless else [])
                for broker, _ in brokers:
                    port = free_port()
                    command = (sluice_command(binary, base, port, settings)
                               if broker == "sluice" else tansu_command(port))
                    row = run_once(command, port, binary, args, bench_flags)
                    row.update(broker=broker, condition=name, round=round_index + 1)
                    result["runs"].append(row)
                    print(f"round {round_index + 1} {broker} {name}: p50 {row['p50']} "
                          f"p99 {row['p99']} p99.99 {row['p99_99']} ms, "
                          f"{row['msgs_per_s']} msg/s, CPU {row['broker_cpu_us_per_msg']} µs/msg",
                          flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n{args.rate} msg/s, {args.producers} producers, {args.size} B, acks=all; "
          f"{args.rounds} rounds; p99 and p99.99 in ms: median (low-high)")
    print("broker | condition | runs | p99 | p99.99 | CPU µs/msg")
    result["summary"] = {}
    for broker in ("sluice", "tansu_memory"):
        for name in conditions:
            rows = [row for row in result["runs"]
                    if row["broker"] == broker and row["condition"] == name]
            if not rows:
                continue
            summary = summarize(rows)
            result["summary"][f"{broker}/{name}"] = summary
            cells = [f"{summary[key]['median']} ({summary[key]['low']}-{summary[key]['high']})"
                     for key in ("p99", "p99_99", "broker_cpu_us_per_msg")]
            print(f"{broker} | {name} | {len(rows)} | " + " | ".join(cells))
    if args.out:
        with open(args.out, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
