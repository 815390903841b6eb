"""kafka-python against Sluice: create a topic, produce with acks=all, read it all back."""
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

address = sys.argv[1]
topic = "kafka-python-topic"
count = 300

admin = KafkaAdminClient(bootstrap_servers=address, client_id="roundtrip-admin")
admin.create_topics([NewTopic(name=topic, num_partitions=3, replication_factor=1)])
admin.close()

# kafka-python 3 defaults to the idempotent producer (InitProducerId + sequences).
producer = KafkaProducer(bootstrap_servers=address, acks="all", linger_ms=5)
futures = [
    producer.send(topic, key=f"k{i % 7}".encode(), value=f"v{i}".encode()) for i in range(count)
]
producer.flush()
offsets = {}
for future in futures:
    metadata = future.get(timeout=30)
    offsets.setdefault(metadata.partition, []).append(metadata.offset)
producer.close()

consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False,
                         consumer_timeout_ms=10000)
partitions = [TopicPartition(topic, p) for p in range(3)]
consumer.assign(partitions)
consumer.seek_to_beginning(*partitions)
seen = {}
values = set()
for message in consumer:
    seen.setdefault(message.partition, []).append(message.offset)
    values.add(message.value.decode())
    if len(values) == count:
        break
consumer.close()

assert values == {f"v{i}" for i in range(count)}, f"got {len(values)} of {count}"
for partition, got in seen.items():
    assert got == sorted(offsets[partition]), f"partition {partition} out of order"
print(f"kafka-python: {count} messages round-tripped over {len(seen)} partitions")

# Consumer group: read everything, commit, and a restarted member of the group resumes after it.
group = KafkaConsumer(topic, bootstrap_servers=address, group_id="kafka-python-group",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=15000)
grouped = set()
for message in group:
    grouped.add(message.value.decode())
    if len(grouped) == count:
        break
group.commit()
group.close()
assert grouped == {f"v{i}" for i in range(count)}, f"group got {len(grouped)} of {count}"

producer = KafkaProducer(bootstrap_servers=address, acks="all")
producer.send(topic, key=b"k", value=b"after-commit").get(timeout=30)
producer.close()
resumed = KafkaConsumer(topic, bootstrap_servers=address, group_id="kafka-python-group",
                        auto_offset_reset="earliest", consumer_timeout_ms=15000)
after = [message.value.decode() for message in resumed]
resumed.close()
assert after == ["after-commit"], f"resumed group saw {after[:5]}... ({len(after)})"
print("kafka-python: consumer group read all, committed, and resumed after the commit")
