#!/usr/bin/env python3
"""kafka-python's admin client against a started Sluice broker (one node): the admin APIs Kafka
tools call (DeleteRecords included), each checked against what was produced. Usage: kafka_python_admin.py HOST:PORT"""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

TOPIC = "admin-topic"
PARTITIONS = 5
RECORDS_PER_PARTITION = 100
VALUE = b"v" * 100


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}")
        sys.exit(1)


def main():
    address = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=address, client_id="sluice-admin-test")
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    producer = KafkaProducer(bootstrap_servers=address, enable_idempotence=True, acks="all",
                             linger_ms=0)
    for partition in range(PARTITIONS):
        for index in range(RECORDS_PER_PARTITION):
            producer.send(TOPIC, value=VALUE, key=b"k%d" % index, partition=partition).get(30)
    producer.flush()

    # DescribeLogDirs: every partition of the topic, sized at least what was produced.
    dirs = admin.describe_log_dirs({TOPIC: list(range(PARTITIONS))})
    check(len(dirs) == 1, f"one broker answers DescribeLogDirs: {dirs}")
    log_dirs = dirs[0]["log_dirs"]
    check(len(log_dirs) == 1 and log_dirs[0]["error_code"] == 0, f"one healthy log dir: {log_dirs}")
    topics = log_dirs[0]["topics"]
    check([t["name"] for t in topics] == [TOPIC], f"only the asked topic: {topics}")
    sizes = {p["partition_index"]: p["partition_size"] for p in topics[0]["partitions"]}
    check(sorted(sizes) == list(range(PARTITIONS)), f"every partition: {sizes}")
    floor = RECORDS_PER_PARTITION * len(VALUE)
    check(all(size >= floor for size in sizes.values()), f"sizes below {floor}: {sizes}")
    check(all(p["offset_lag"] == 0 for p in topics[0]["partitions"]), "a leader has no lag")
    if "total_bytes" in log_dirs[0]:
        check(log_dirs[0]["total_bytes"] >= log_dirs[0]["usable_bytes"] > 0,
              f"disk space: {log_dirs[0]}")
    print(f"describe_log_dirs: {PARTITIONS} partitions, {min(sizes.values())}-{max(sizes.values())} bytes")

    # DescribeProducers: the idempotent producer, at the last sequence it sent per partition.
    states = admin.describe_producers([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    check(len(states) == PARTITIONS, f"a state per partition: {states}")
    for tp, state in states.items():
        producers = getattr(state, "active_producers", None)
        if producers is None:
            producers = state["active_producers"] if isinstance(state, dict) else state
        check(len(producers) == 1, f"{tp}: one producer: {producers}")
        producer_state = producers[0]
        last = getattr(producer_state, "last_sequence", None)
        if last is None:
            last = producer_state["last_sequence"]
        check(last == RECORDS_PER_PARTITION - 1, f"{tp}: last sequence {last}")
    print(f"describe_producers: one producer per partition at sequence {RECORDS_PER_PARTITION - 1}")

    # DescribeTopicPartitions, two partitions a page: the cursor walks the whole topic.
    seen = []
    cursor = None
    for _ in range(PARTITIONS + 2):
        page = admin.describe_topic_partitions([TOPIC], response_partition_limit=2, cursor=cursor)
        for topic in page["topics"]:
            check(topic["error_code"] == 0, f"topic error: {topic}")
            seen.extend(p["partition_index"] for p in topic["partitions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    check(seen == list(range(PARTITIONS)), f"pages cover the partitions once, in order: {seen}")
    print(f"describe_topic_partitions: {PARTITIONS} partitions in pages of 2")

    # ListPartitionReassignments: nothing is moving.
    moving = admin.list_partition_reassignments()
    check(not moving, f"no reassignment in progress: {moving}")
    print("list_partition_reassignments: none")

    # ElectLeaders (preferred): one replica per partition, so the preferred one leads already.
    elected = admin.elect_leaders(0, {TOPIC: [0, 1]}, raise_errors=False)
    codes = sorted((p.partition_id, p.error_code) for r in elected.replica_election_results
                   for p in r.partition_result)
    check(codes == [(0, 84), (1, 84)], f"ELECTION_NOT_NEEDED on one replica: {elected}")
    print("elect_leaders: ELECTION_NOT_NEEDED on one replica")

    # DescribeConfigs on the broker: every key, read-only, with documentation and synonyms.
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")],
                                     include_synonyms=True, config_filter="all")
    text = repr(configs)
    for key in ("num.partitions", "log.retention.ms", "log.segment.bytes", "listeners"):
        check(key in text, f"broker config {key} missing: {text[:2000]}")
    print("describe_configs (broker): keys, synonyms")

    # log.level changes at run time (IncrementalAlterConfigs on the broker); static keys refuse.
    admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "0",
                                        configs={"log.level": "debug"})],
                        incremental=True, raise_on_unknown=False)
    level = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0",
                                                   configs={"log.level": None})],
                                   config_filter="all")
    check("'debug'" in repr(level) or '"debug"' in repr(level), f"log.level now debug: {level}")
    refused = admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "0",
                                                  configs={"num.partitions": "3"})],
                                  incremental=True, raise_on_unknown=False)
    check("Error 40" in repr(refused), f"a static broker key must be refused: {refused}")
    admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "0",
                                        configs={"log.level": "info"})],
                        incremental=True, raise_on_unknown=False)
    print("incremental_alter_configs (broker): log.level at run time, static keys refused")

    # DeleteRecords: the log start moves; earliest offsets follow; a consumer below it is moved
    # on (OFFSET_OUT_OF_RANGE then earliest); past the high watermark is refused.
    deleted = admin.delete_records({TopicPartition(TOPIC, 0): 40, TopicPartition(TOPIC, 1): -1})
    low = {tp.partition: answer["low_watermark"] for tp, answer in deleted.items()}
    check(low == {0: 40, 1: RECORDS_PER_PARTITION}, f"low watermarks: {deleted}")
    consumer = KafkaConsumer(bootstrap_servers=address, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    tp0 = TopicPartition(TOPIC, 0)
    starts = consumer.beginning_offsets([tp0, TopicPartition(TOPIC, 1)])
    check(starts == {tp0: 40, TopicPartition(TOPIC, 1): RECORDS_PER_PARTITION},
          f"earliest offsets: {starts}")
    consumer.assign([tp0])
    consumer.seek(tp0, 0)
    offsets = [record.offset for record in consumer]
    check(offsets and offsets[0] == 40 and offsets[-1] == RECORDS_PER_PARTITION - 1,
          f"reading from 0 restarts at the log start: {offsets[:3]}...")
    consumer.close()
    try:
        admin.delete_records({tp0: RECORDS_PER_PARTITION + 1})
        check(False, "deleting past the high watermark must fail")
    except Exception as error:  # kafka-python raises OffsetOutOfRangeError
        check("OffsetOutOfRange" in type(error).__name__ or "OffsetOutOfRange" in repr(error),
              f"past the high watermark: {error!r}")
    print("delete_records: log start moved, consumers follow, past the end refused")
    admin.close()


if __name__ == "__main__":
    main()
