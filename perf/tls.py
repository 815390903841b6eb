#!/usr/bin/env python3
"""Plaintext against TLS: produce and fetch throughput and broker CPU per message.

One broker (`--cores 1`, so its CPU time is one shard's) with a PLAINTEXT and an SSL listener;
the same client (confluent-kafka, its bundled librdkafka with OpenSSL) produces N records of
SIZE bytes (linger 5 ms, batches of 16 KiB, acks=all) and then consumes them all, once over
each listener. Broker CPU is read from /proc/<pid>/stat (user + system) around each phase;
CPU per message is that delta over N. Certificates are made with openssl in a temp directory.

Usage: perf/tls.py --binary target/release/sluice [--messages 300000] [--size 1024] [--out F]
       [--listeners PLAINTEXT,SSL] [--rate MSGS_PER_S]
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def openssl(directory, *arguments):
    subprocess.run(["openssl", *arguments], cwd=directory, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def certificates(directory):
    openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=perf-ca")
    openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "san.ext"), "w") as ext:
        ext.write("subjectAltName=IP:127.0.0.1\n")
    openssl(directory, "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.ext")
    with open(os.path.join(directory, "keystore.pem"), "w") as keystore:
        for name in ("broker.key", "broker.pem"):
            with open(os.path.join(directory, name)) as part:
                keystore.write(part.read())


def start(binary, directory):
    process = subprocess.Popen(
        [binary, "serve", "--data-dir", os.path.join(directory, "data"), "--cores", "1",
         "--set", "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
         "--set", f"ssl.keystore.location={directory}/keystore.pem",
         "--set", "metrics.listen="],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    listeners = {}
    for line in process.stdout:
        if line.startswith("sluice: listener "):
            name, address = line.split()[2], line.split()[4]
            listeners[name] = address
        if line.startswith("sluice: listening on"):
            break
    return process, listeners


def client_config(listener, address, directory):
    config = {"bootstrap.servers": address}
    if listener == "SSL":
        config.update({"security.protocol": "SSL",
                       "ssl.ca.location": os.path.join(directory, "ca.pem")})
    return config


def produce(config, topic, messages, size, pid, rate):
    producer = Producer({**config, "acks": "all", "linger.ms": 5, "batch.size": 16384,
                         "queue.buffering.max.messages": 1000000})
    value = b"x" * size
    producer.produce(topic, value=value, partition=0)
    producer.flush(30)  # metadata, connection and TLS handshake before the clock starts
    cpu, started = cpu_seconds(pid), time.perf_counter()
    for sent in range(messages):
        if rate and sent % 1000 == 0:
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
            producer.poll(0)
        while True:
            try:
                producer.produce(topic, value=value, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    return elapsed, cpu_seconds(pid) - cpu


def consume(config, topic, messages, pid):
    consumer = Consumer({**config, "group.id": f"perf-{topic}", "enable.auto.commit": False,
                         "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 1048576})
    consumer.assign([TopicPartition(topic, 0, 1)])  # offset 1: skip the warm-up record
    cpu, started = cpu_seconds(pid), time.perf_counter()
    seen = 0
    while seen < messages:
        batch = consumer.consume(10000, 5.0)
        if not batch:
            break
        seen += sum(1 for message in batch if not message.error())
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen, elapsed, cpu_seconds(pid) - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/sluice")
    parser.add_argument("--messages", type=int, default=300000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--out")
    parser.add_argument("--rate", type=int, default=0,
                        help="produce at most this many messages per second (0: as fast as the "
                             "client goes); equal rates compare the broker's cost at equal work")
    parser.add_argument("--listeners", default="PLAINTEXT,SSL",
                        help="which listeners to measure, in order (PLAINTEXT, SSL)")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="sluice-tls-perf-")
    certificates(directory)
    process, listeners = start(args.binary, directory)
    rows = []
    try:
        for listener in args.listeners.split(","):
            config = client_config(listener, listeners[listener], directory)
            topic = f"perf-{listener.lower()}"
            produce_s, produce_cpu = produce(config, topic, args.messages, args.size, process.pid,
                                             args.rate)
            seen, fetch_s, fetch_cpu = consume(config, topic, args.messages, process.pid)
            if seen < args.messages:
                sys.exit(f"{listener}: consumed {seen} of {args.messages}")
            mib = args.messages * args.size / (1 << 20)
            rows.append({
                "listener": listener,
                "produce_msgs_per_s": round(args.messages / produce_s),
                "produce_mib_per_s": round(mib / produce_s, 1),
                "produce_broker_cpu_us_per_msg": round(produce_cpu / args.messages * 1e6, 2),
                "fetch_msgs_per_s": round(args.messages / fetch_s),
                "fetch_mib_per_s": round(mib / fetch_s, 1),
                "fetch_broker_cpu_us_per_msg": round(fetch_cpu / args.messages * 1e6, 2),
            })
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    header = list(rows[0].keys())
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[key]) for key in header))
    if args.out:
        result = {"machine": platform.node(), "kernel": platform.release(),
                  "messages": args.messages, "size": args.size, "rate": args.rate, "rows": rows,
                  "tls": "rustls in user space (kernel TLS unavailable here)"}
        with open(args.out, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
