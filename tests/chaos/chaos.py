#!/usr/bin/env python3
"""Jepsen-style fault checker for a Sluice cluster.

Runs three real `sluice serve` nodes on 127.0.0.1, .2 and .3 (every one a controller voter), a
workload of acknowledged writes (idempotent confluent-kafka producers, acks=all) and a consumer
group that commits what it reads, and injects faults for a set time:

  kill      kill -9 a node, restart it 1-3 s later
  pause     SIGSTOP a node, SIGCONT it 1-3 s later
  partition cut a node's node-to-node links to the others (iptables on lo), heal 1-3 s later
  restart   SIGTERM a node (graceful), start it again once it exited

Then it heals everything, reads every partition from the beginning and checks the history:

  lost            an acknowledged record is not in the log
  duplicated      a record appears more than once
  inconsistent    the record at an acknowledged (partition, offset) is another one
  reordered       two records of one producer and key are in the log in the other order
  committed       the group's final committed offset is below one it had acknowledged

and reports the longest time without any acknowledgement (unavailability). The topic has
--replicas replicas per partition (default 3: each partition a Raft group over the three nodes,
so a fault on one node moves leadership instead of stopping the partition; 1 checks the
single-replica path, where a node's partitions wait for it to come back).

Usage: tests/chaos/chaos.py [--binary target/debug/sluice] [--duration-s 60] [--seed N] [--replicas 3]
                            [--faults kill,pause,partition,restart] [--out summary.json]
                            [--watch-epochs]
A duplicated record is reported with the offsets of both copies and where it was acknowledged;
a record read twice at one offset is one record. --watch-epochs counts librdkafka's producer
epoch bumps (the way an idempotent client can itself resend a batch it already got committed).
Exit status 1 if any check fails; the nodes' logs and data directories are then kept. Needs root
(iptables) and confluent-kafka.
"""

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLIENT_PORT = 29292
CONTROLLER_PORT = CLIENT_PORT + 1
NODES = (1, 2, 3)
TOPIC = "chaos"
PARTITIONS = 6
KEYS = 24


class Cluster:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.processes = {}
        self.cut_rules = []
        voters = ",".join(f"{n}@127.0.0.{n}:{CONTROLLER_PORT}" for n in NODES)
        self.args = {
            n: [
                binary, "serve", "--node-id", str(n), "--cores", "1",
                "--data-dir", os.path.join(work, f"d{n}"),
                "--set", f"listeners=PLAINTEXT://127.0.0.{n}:{CLIENT_PORT},"
                         f"CONTROLLER://127.0.0.{n}:{CONTROLLER_PORT}",
                "--set", f"controller.quorum.voters={voters}",
                "--set", "broker.session.timeout.ms=3000",
                "--set", "broker.heartbeat.interval.ms=500",
            ]
            for n in NODES
        }

    def bootstrap(self):
        return ",".join(f"127.0.0.{n}:{CLIENT_PORT}" for n in NODES)

    def start(self, node):
        log = open(os.path.join(self.work, f"node{node}.log"), "ab")
        self.processes[node] = subprocess.Popen(
            self.args[node], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")})

    def kill9(self, node):
        process = self.processes.pop(node)
        process.kill()
        process.wait()

    def terminate(self, node):
        process = self.processes.pop(node)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "timeout"

    def signal(self, node, sig):
        self.processes[node].send_signal(sig)

    def cut(self, node):
        for other in NODES:
            if other == node:
                continue
            for source, destination in ((node, other), (other, node)):
                for direction in ("--dport", "--sport"):
                    rule = ["INPUT", "-i", "lo", "-p", "tcp", "-s", f"127.0.0.{source}",
                            "-d", f"127.0.0.{destination}", direction, str(CONTROLLER_PORT),
                            "-j", "DROP"]
                    subprocess.run(["iptables", "-I", *rule], check=True)
                    self.cut_rules.append(rule)

    def heal(self):
        for rule in self.cut_rules:
            subprocess.run(["iptables", "-D", *rule], check=False)
        self.cut_rules = []

    def stop_all(self):
        self.heal()
        for node in list(self.processes):
            self.kill9(node)


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}          # value -> (partition, offset, time)
        self.partition_acks = {}  # partition -> ack times
        self.failed = 0
        self.failures = []       # the first failed deliveries, with their errors
        self.ack_times = []
        self.commits = {}        # partition -> highest acknowledged committed offset
        self.faults = []
        self.watch_epochs = False
        self.epoch_events = 0
        self.epoch_lines = []

    def ack(self, value, partition, offset):
        now = time.monotonic()
        with self.lock:
            self.acked[value] = (partition, offset, now)
            self.ack_times.append(now)
            self.partition_acks.setdefault(partition, []).append(now)


class EpochBumps(logging.Handler):
    """Counts librdkafka's idempotence events (`debug=eos`): a sequence error (ERRSEQ) makes it
    drain and bump its producer epoch, after which a batch it gave up on is sent again under
    the new epoch, where no broker can recognise it as a retry. Keeps the first lines."""

    def __init__(self, history):
        super().__init__()
        self.history = history

    def emit(self, record):
        line = record.getMessage()
        # ERRSEQ: a sequence error; "-> DrainBump" / "-> DrainReset": the state changes that
        # end in a new epoch or a new producer id.
        if "ERRSEQ" in line or "-> DrainBump" in line or "-> DrainReset" in line:
            with self.history.lock:
                self.history.epoch_events += 1
                if len(self.history.epoch_lines) < 20:
                    self.history.epoch_lines.append(line)


def produce(cluster, history, stop, producer_id, overrides=None):
    logger = None
    if history.watch_epochs:
        logger = logging.getLogger(f"producer-{producer_id}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(EpochBumps(history))
        overrides = {"debug": "eos", "log_level": 7, **(overrides or {})}
    producer = Producer({
        "bootstrap.servers": cluster.bootstrap(),
        "enable.idempotence": True,
        "log_level": 2,
        # The broker's unavailability is measured, not librdkafka's reconnect backoff (10 s
        # by default after a few refused connects).
        "reconnect.backoff.max.ms": 500,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 100,
        **(overrides or {}),
    }, **({"logger": logger} if logger else {}))
    sequence = 0

    def delivered(error, message):
        if error is None:
            history.ack(message.value().decode(), message.partition(), message.offset())
        else:
            with history.lock:
                history.failed += 1
                if len(history.failures) < 20:
                    history.failures.append(
                        {"value": message.value().decode(), "error": str(error),
                         "at": time.monotonic()})

    while not stop.is_set():
        key = f"k{sequence % KEYS}"
        value = f"p{producer_id}-{key}-{sequence}"
        try:
            producer.produce(TOPIC, key=key, value=value, on_delivery=delivered)
            sequence += 1
        except BufferError:
            producer.poll(0.1)
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(150)


def consume_group(cluster, history, stop):
    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap(),
        "group.id": "chaos-group",
        "log_level": 2,
        # The broker's unavailability is measured, not librdkafka's reconnect backoff (10 s
        # by default after a few refused connects).
        "reconnect.backoff.max.ms": 500,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
    })
    consumer.subscribe([TOPIC])
    read = 0
    while not stop.is_set():
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        read += 1
        if read % 50 == 0:
            try:
                committed = consumer.commit(asynchronous=False)
                with history.lock:
                    for tp in committed or []:
                        if tp.error is None and tp.offset >= 0:
                            history.commits[tp.partition] = max(
                                history.commits.get(tp.partition, -1), tp.offset)
            except KafkaException:
                pass  # not acknowledged: nothing to check
    consumer.close()


def nemesis(cluster, history, stop, kinds, rng):
    while not stop.is_set():
        time.sleep(rng.uniform(2, 4))
        if stop.is_set():
            break
        kind = rng.choice(kinds)
        node = rng.choice(NODES)
        hold = rng.uniform(1, 3)
        started = time.monotonic()
        if kind == "kill":
            cluster.kill9(node)
            time.sleep(hold)
            cluster.start(node)
        elif kind == "pause":
            cluster.signal(node, signal.SIGSTOP)
            time.sleep(hold)
            cluster.signal(node, signal.SIGCONT)
        elif kind == "partition":
            cluster.cut(node)
            time.sleep(hold)
            cluster.heal()
        elif kind == "restart":
            status = cluster.terminate(node)
            cluster.start(node)
            hold = f"exit {status}"
        history.faults.append({"kind": kind, "node": node, "at": started, "hold": hold})


def read_back(cluster):
    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap(),
        "group.id": "chaos-checker",
        "enable.auto.commit": False,
    })
    log = {}
    conflicts = []
    for partition in range(PARTITIONS):
        tp = TopicPartition(TOPIC, partition)
        # Leadership may still move once the faults stop (a node restarted last rejoins):
        # librdkafka answers a stale leader's refusal here without retrying, so retry.
        for attempt in range(30):
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=30)
                break
            except KafkaException:
                if attempt == 29:
                    raise
                time.sleep(1)
        consumer.assign([TopicPartition(TOPIC, partition, low)])
        # By offset: a record delivered twice at one offset (a fetch retried across a leader
        # change) is one record in the log, not a duplicate; two values at one offset are an
        # inconsistency and are reported as such.
        records = {}
        last = -1
        deadline = time.monotonic() + 60
        while last < high - 1 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                # The log may end in control batches (Raft's leader and configuration
                # entries), which a consumer never sees: done once the position is past them.
                position = consumer.position([TopicPartition(TOPIC, partition)])[0].offset
                if position >= high:
                    break
                continue
            last = max(last, message.offset())
            value = message.value().decode()
            if records.setdefault(message.offset(), value) != value:
                conflicts.append({"partition": partition, "offset": message.offset(),
                                  "values": [records[message.offset()], value]})
        log[partition] = sorted(records.items())
    committed = {
        tp.partition: tp.offset
        for tp in Consumer({"bootstrap.servers": cluster.bootstrap(),
                            "group.id": "chaos-group"}).committed(
            [TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=30)
    }
    consumer.close()
    return log, committed, conflicts


def check(history, log, committed):
    where = {}
    duplicated = []
    for partition, records in log.items():
        for offset, value in records:
            if value in where:
                acked = history.acked.get(value)
                duplicated.append({"value": value, "first": list(where[value]),
                                   "again": [partition, offset],
                                   "acked": list(acked) if acked else None})
            where[value] = (partition, offset)
    lost = [v for v in history.acked if v not in where]
    # librdkafka acknowledges some records without an offset (offset None: those it learns
    # were persisted from a later acknowledgement): only their partition is checked.
    inconsistent = [
        {"value": v, "acked": [p, o], "log": where.get(v)}
        for v, (p, o, _) in history.acked.items()
        if v in where and (where[v][0] != p or (o is not None and where[v][1] != o))
    ]
    reordered = []
    last = {}
    for value, (partition, offset) in sorted(where.items(), key=lambda item: item[1]):
        producer, key, sequence = value.rsplit("-", 2)[0], value.split("-")[1], int(value.rsplit("-", 1)[1])
        stream = (producer, key)
        if stream in last and last[stream] > sequence:
            reordered.append(value)
        last[stream] = max(last.get(stream, -1), sequence)
    regressions = [
        {"partition": p, "acknowledged": o, "final": committed.get(p)}
        for p, o in history.commits.items()
        if committed.get(p, -1) < o
    ]
    def longest_gap(times):
        times = sorted(times)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)
    return {
        "acknowledged": len(history.acked),
        "failed_deliveries": history.failed,
        "failures": history.failures,
        "records_in_log": sum(len(r) for r in log.values()),
        "lost": lost[:20], "lost_count": len(lost),
        "duplicated": duplicated[:20], "duplicated_count": len(duplicated),
        "inconsistent": inconsistent[:20], "inconsistent_count": len(inconsistent),
        "reordered": reordered[:20], "reordered_count": len(reordered),
        "committed_regressions": regressions,
        # No acknowledgement at all, and per partition (one replica: a partition waits for its
        # node while it is down or paused).
        "longest_unavailability_s": round(longest_gap(history.ack_times), 3),
        "longest_partition_unavailability_s": {
            p: round(longest_gap(t), 3) for p, t in sorted(history.partition_acks.items())
        },
        "epoch_events": history.epoch_events if history.watch_epochs else None,
        "epoch_lines": history.epoch_lines,
        "faults": len(history.faults),
        "fault_kinds": sorted({f["kind"] for f in history.faults}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/debug/sluice")
    parser.add_argument("--duration-s", type=float, default=60)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--faults", default="kill,pause,partition,restart")
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--watch-epochs", action="store_true",
                        help="count librdkafka's producer-epoch bumps (debug=eos)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="sluice-chaos-")
    cluster = Cluster(os.path.abspath(args.binary), work)
    history = History()
    history.watch_epochs = args.watch_epochs
    ok = False
    try:
        for node in NODES:
            cluster.start(node)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        deadline = time.monotonic() + 30
        while True:  # three brokers registered and a controller elected
            try:
                metadata = admin.list_topics(timeout=5)
                if len(metadata.brokers) == 3 and metadata.controller_id >= 0:
                    break
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not come up")
            time.sleep(0.2)
        while True:
            futures = admin.create_topics([NewTopic(TOPIC, PARTITIONS, args.replicas)])
            try:
                futures[TOPIC].result(10)
                break
            except KafkaException as error:
                if "TOPIC_ALREADY_EXISTS" in str(error):
                    break
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        stop_work, stop_faults = threading.Event(), threading.Event()
        workers = [threading.Thread(target=produce, args=(cluster, history, stop_work, i))
                   for i in range(args.producers)]
        workers.append(threading.Thread(target=consume_group, args=(cluster, history, stop_work)))
        chaos = threading.Thread(target=nemesis, args=(
            cluster, history, stop_faults, args.faults.split(","), rng))
        for thread in workers + [chaos]:
            thread.start()
        time.sleep(args.duration_s)
        stop_faults.set()
        chaos.join()
        cluster.heal()
        for node in NODES:
            if node not in cluster.processes:
                cluster.start(node)
        time.sleep(5)  # let the last writes and commits land on a whole cluster
        stop_work.set()
        for thread in workers:
            thread.join()
        log, committed, conflicts = read_back(cluster)
        summary = check(history, log, committed)
        summary["conflicting_reads"] = conflicts[:20]
        summary["inconsistent_count"] += len(conflicts)
        summary.update({"seed": args.seed, "duration_s": args.duration_s})
        ok = not (summary["lost_count"] or summary["duplicated_count"]
                  or summary["inconsistent_count"] or summary["reordered_count"]
                  or summary["committed_regressions"]) and summary["acknowledged"] > 0
        summary["ok"] = ok
        print(json.dumps(summary, indent=2))
        if args.out:
            with open(args.out, "w") as out:
                json.dump({**summary, "fault_history": history.faults}, out, indent=2)
    finally:
        cluster.stop_all()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"node logs kept in {work}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
