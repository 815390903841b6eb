"""confluent-kafka (librdkafka 2.x wheel) against Sluice: idempotent produce, group consume."""
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

address = sys.argv[1]
topic = "confluent-topic"
count = 200

admin = AdminClient({"bootstrap.servers": address})
for future in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
    future.result(30)

producer = Producer({"bootstrap.servers": address, "enable.idempotence": True, "linger.ms": 5})
failures = []
for index in range(count):
    producer.produce(topic, key=f"k{index % 9}", value=f"c{index}",
                     on_delivery=lambda error, _: error and failures.append(error))
assert producer.flush(30) == 0 and not failures, failures

consumer = Consumer({"bootstrap.servers": address, "group.id": "confluent-group",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe([topic])
seen = set()
for _ in range(600):
    message = consumer.poll(0.1)
    if message is None or message.error():
        continue
    seen.add(message.value().decode())
    if len(seen) == count:
        break
consumer.commit(asynchronous=False)
consumer.close()
assert seen == {f"c{i}" for i in range(count)}, f"got {len(seen)} of {count}"
print(f"confluent-kafka: {count} idempotent messages consumed by a group and committed")
