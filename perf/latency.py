#!/usr/bin/env python3
"""Produce acknowledgement latency at a fixed rate, against its floors, in one run (issue 12).

Three measurements at the same rate and message size, one after the other on this machine:

- fio: a 4 KiB O_DIRECT write then fdatasync per operation, paced at the same rate, in the
  data directory's filesystem (the disk floor: write latency plus fdatasync latency at each
  percentile).
- Tansu 0.6 with its memory engine (no disk at all; installed by perf/install-peers.sh), driven
  by the same client as Sluice: the network and client floor.
- Sluice (`serve --cores 1`, fdatasync before every acknowledgement), same client.

The client is `sluice bench produce` (one producer, linger 0, acks=all by default). The target
of the issue: each Sluice percentile at most Tansu's plus fio's at that percentile. Broker CPU
per message is read from /proc/<pid>/stat (user + system, threads and io_uring workers
included) around the measured run.

Usage: perf/latency.py --binary target/release/sluice [--rate 2000] [--size 1024] [--set K=V]... [--no-peers]
       [--duration-s 8] [--runs 3] [--acks -1] [--out F.json] [--smoke]
--smoke: one short run of each, and anything not installed (fio, Tansu) skipped: a check that
the script runs, not a measurement (CI runs it so).
"""
import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
PERCENTILES = [("p50", "50.000000"), ("p99", "99.000000"), ("p99_9", "99.900000")]
TANSU = os.path.join(os.environ.get("SLUICE_PEERS_DIR",
                                    os.path.expanduser("~/.cache/sluice-peers")), "bin", "tansu")


def cpu_seconds(pid):
    """User + system CPU of a process and all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"broker exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port} after {seconds} s")


def fio_floor(directory, rate, seconds):
    """Percentiles (ms) of write + fdatasync: fio's write completion plus its sync latency."""
    output = subprocess.run(
        ["fio", "--name=floor", f"--directory={directory}", "--size=64M", "--bs=4k",
         "--rw=write", "--direct=1", "--ioengine=sync", "--fdatasync=1",
         f"--rate_iops={rate}", f"--runtime={seconds}", "--time_based",
         "--output-format=json"],
        check=True, capture_output=True, text=True).stdout
    job = json.loads(output[output.index("{"):])["jobs"][0]
    write = job["write"]["clat_ns"]["percentile"]
    sync = job["sync"]["lat_ns"]["percentile"]
    row = {}
    for name, key in PERCENTILES:
        row[name] = round((write[key] + sync[key]) / 1e6, 3)
        row[name + "_write"] = round(write[key] / 1e6, 3)
        row[name + "_fdatasync"] = round(sync[key] / 1e6, 3)
    return row


def bench(binary, port, args, seconds, warmup, create):
    """One `sluice bench produce` run; its acknowledgement percentiles in ms."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [binary, "bench", "produce", "--bootstrap", f"127.0.0.1:{port}",
                   "--topic", "latency", "--message-bytes", str(args.size),
                   f"--acks={args.acks}", "--linger-ms", "0", "--rate", str(args.rate),
                   "--duration-s", str(seconds), "--warmup-s", str(warmup),
                   "--progress-ms", "0", "--json", result.name]
        if create:
            command.append("--create-topic")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        report = json.load(open(result.name))
    latency = report["produce"]["ack_latency_us"]
    row = {name: round(latency[name] / 1000, 3) for name, _ in PERCENTILES}
    row["messages"] = latency["count"]
    return row


def scrape_histograms(metrics_port):
    """Sluice's latency histograms from /metrics: {(name, stage): {bound: cumulative count}},
    with "sum" and "count" alongside the bounds."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as page:
        text = page.read().decode()
    histograms = {}
    for line in text.splitlines():
        match = re.match(r'(sluice_(?:produce_stage|fdatasync|segment_write|dsync_write)_latency_seconds)'
                         r'_(bucket|sum|count)(?:\{([^}]*)\})? (\S+)$', line)
        if not match:
            continue
        name, kind, labels, value = match.groups()
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        key = (name.replace("sluice_", "").replace("_latency_seconds", ""), labels.get("stage"))
        slot = labels["le"] if kind == "bucket" else kind
        histograms.setdefault(key, {})[slot] = float(value)
    return histograms


def histogram_summary(before, after):
    """Per histogram, over what happened between two scrapes: count, mean and p50/p99/p99.9
    in ms (the upper bound of the bucket the percentile falls in: a coarse figure)."""
    summary = {}
    for key, slots in after.items():
        base = before.get(key, {})
        count = slots.get("count", 0) - base.get("count", 0)
        if count <= 0:
            continue
        bounds = sorted((float(le), slots[le] - base.get(le, 0))
                        for le in slots if le not in ("sum", "count"))
        row = {"count": int(count),
               "mean": round((slots["sum"] - base.get("sum", 0)) / count * 1e3, 3)}
        for name, fraction in (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)):
            row[name + "_le"] = next((round(bound * 1e3, 3) for bound, seen in bounds
                                      if seen >= fraction * count), None)
        summary["/".join(part for part in key if part)] = row
    return summary


def measure_broker(command, port, binary, args, seconds, warmup, runs, metrics_port=None):
    """Starts a broker, runs the bench `runs` times, stops it. One row per run, with the
    broker's CPU per message over the measured part (warm-up included in the messages) and,
    when the broker has a metrics port (Sluice), its stage histograms over the run."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_for_port(port, process)
        for run in range(runs):
            histograms = scrape_histograms(metrics_port) if metrics_port else None
            cpu = cpu_seconds(process.pid)
            row = bench(binary, port, args, seconds, warmup, create=run == 0)
            sent = row["messages"] + int(warmup * args.rate)
            row["broker_cpu_us_per_msg"] = round(
                (cpu_seconds(process.pid) - cpu) / max(sent, 1) * 1e6, 1)
            if metrics_port:
                row["stages"] = histogram_summary(histograms, scrape_histograms(metrics_port))
            rows.append(row)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    return rows


def add_load_arguments(parser, rate, duration_s):
    """The flags every script here shares: the binary (broker and client), the load, where
    the broker writes, the JSON output, smoke mode."""
    parser.add_argument("--binary", default="target/release/sluice")
    parser.add_argument("--rate", type=int, default=rate)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--duration-s", type=float, default=duration_s)
    parser.add_argument("--warmup-s", type=float, default=2)
    parser.add_argument("--data-dir", help="where the broker (and fio) write (default: a temp "
                                           "dir under the current directory's filesystem)")
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("--smoke", action="store_true",
                        help="a short run that checks the script works, not a measurement")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser, rate=2000, duration_s=8)
    parser.add_argument("--acks", type=int, default=-1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a broker setting for the Sluice runs (repeatable), e.g. "
                             "log.flush.dsync.bytes.max=0 to compare")
    parser.add_argument("--no-peers", action="store_true",
                        help="Sluice only (no fio, no Tansu): an A/B of settings")
    args = parser.parse_args()
    if args.smoke:
        args.duration_s, args.warmup_s, args.runs = 1, 0.5, 1
    binary = os.path.abspath(args.binary)
    base = tempfile.mkdtemp(prefix="sluice-latency-", dir=args.data_dir or os.getcwd())
    result = {"machine": platform.node(), "kernel": platform.release(), "rate": args.rate,
              "size": args.size, "acks": args.acks, "duration_s": args.duration_s,
              "runs": args.runs, "smoke": args.smoke, "sluice_settings": args.set}
    try:
        if args.no_peers:
            pass
        elif shutil.which("fio"):
            result["fio"] = fio_floor(base, args.rate, max(1, int(args.duration_s)))
        elif not args.smoke:
            sys.exit("fio is missing (apt-get install fio)")
        if args.no_peers:
            pass
        elif os.access(TANSU, os.X_OK):
            port = free_port()
            result["tansu_memory"] = measure_broker(
                [TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                 "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                 "--storage-engine", "memory://tansu/"],
                port, binary, args, args.duration_s, args.warmup_s, args.runs)
        elif not args.smoke:
            sys.exit(f"{TANSU} is missing (perf/install-peers.sh)")
        port, metrics_port = free_port(), free_port()
        result["sluice"] = measure_broker(
            [binary, "serve", "--cores", "1", "--data-dir", os.path.join(base, "data"),
             "--listen", f"127.0.0.1:{port}",
             "--set", f"metrics.listen=127.0.0.1:{metrics_port}"]
            + [arg for setting in args.set for arg in ("--set", setting)],
            port, binary, args, args.duration_s, args.warmup_s, args.runs, metrics_port)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"{args.rate} msg/s, {args.size} B, acks {args.acks}, linger 0, one producer; ms")
    print("what | run | p50 | p99 | p99.9 | broker CPU µs/msg")
    if "fio" in result:
        fio = result["fio"]
        print(f"fio write+fdatasync | - | {fio['p50']} | {fio['p99']} | {fio['p99_9']} | -")
    for name in ("tansu_memory", "sluice"):
        for index, row in enumerate(result.get(name, [])):
            print(f"{name} | {index + 1} | {row['p50']} | {row['p99']} | {row['p99_9']} | "
                  f"{row['broker_cpu_us_per_msg']}")
    for index, row in enumerate(result.get("sluice", [])):
        print(f"sluice run {index + 1}, broker stages (mean; p50/p99/p99.9 as bucket bounds), ms:")
        for name, stage in row["stages"].items():
            print(f"  {name:<22} n={stage['count']:<6} mean {stage['mean']:<7} "
                  f"p50 <= {stage['p50_le']}  p99 <= {stage['p99_le']}  "
                  f"p99.9 <= {stage['p99_9_le']}")
    if "fio" in result and result.get("tansu_memory"):
        floor = {name: round(min(r[name] for r in result["tansu_memory"]) + result["fio"][name], 3)
                 for name, _ in PERCENTILES}
        result["target"] = floor
        print(f"target (best Tansu + fio) | - | {floor['p50']} | {floor['p99']} | "
              f"{floor['p99_9']} | -")
    if args.out:
        with open(args.out, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
