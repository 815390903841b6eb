"""A Kafka client over a secured listener: produce N records to a topic and read them back.

Usage: secure_client.py CLIENT BOOTSTRAP TOPIC [key=value ...]
  CLIENT: kafka-python | confluent-kafka
  keys:   protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), mechanism, user, password,
          token (OAUTHBEARER), ca, cert, key, count (default 20), mode (roundtrip | produce |
          consume | metadata), pace_ms (confluent-kafka: wait between records)
Prints `ok N` and exits 0 on success; prints the client's error and exits 1 on failure, so a
test can assert that a wrong password or a denied operation fails.
"""
import sys
import time

client, bootstrap, topic = sys.argv[1:4]
options = dict(argument.split("=", 1) for argument in sys.argv[4:])
protocol = options.get("protocol", "PLAINTEXT")
count = int(options.get("count", "20"))
mode = options.get("mode", "roundtrip")
values = [f"secure-{i}".encode() for i in range(count)]


def fail(error):
    print(f"error {type(error).__name__}: {error}")
    sys.exit(1)


def kafka_python():
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    try:
        from kafka.net.sasl.oauth import AbstractTokenProvider  # kafka-python 3
    except ImportError:
        from kafka.sasl.oauth import AbstractTokenProvider  # kafka-python 2

    common = {"bootstrap_servers": bootstrap, "security_protocol": protocol,
              "request_timeout_ms": 15000}
    if "ca" in options:
        common["ssl_cafile"] = options["ca"]
        common["ssl_check_hostname"] = True
    if "cert" in options:
        common["ssl_certfile"] = options["cert"]
        common["ssl_keyfile"] = options["key"]
    if "mechanism" in options:
        common["sasl_mechanism"] = options["mechanism"]
        if options["mechanism"] == "OAUTHBEARER":
            class Token(AbstractTokenProvider):
                def token(self):
                    return options["token"]
            common["sasl_oauth_token_provider"] = Token()
        else:
            common["sasl_plain_username"] = options["user"]
            common["sasl_plain_password"] = options["password"]
    if mode in ("roundtrip", "produce"):
        producer = KafkaProducer(acks="all", max_block_ms=15000, **common)
        futures = [producer.send(topic, value=value) for value in values]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
        producer.close()
    if mode in ("roundtrip", "consume"):
        consumer = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=15000, **common)
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        seen = []
        for message in consumer:
            seen.append(message.value)
            if len(seen) == count:
                break
        consumer.close()
        if seen != values:
            raise AssertionError(f"read {len(seen)} records, expected {count}")
    if mode == "metadata":
        common["request_timeout_ms"] = 5000
        consumer = KafkaConsumer(**common)
        topics = consumer.topics()
        consumer.close()
        print("topics " + ",".join(sorted(topics)))


def confluent():
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    common = {"bootstrap.servers": bootstrap, "security.protocol": protocol,
              "socket.timeout.ms": 10000}
    if "ca" in options:
        common["ssl.ca.location"] = options["ca"]
    if "cert" in options:
        common["ssl.certificate.location"] = options["cert"]
        common["ssl.key.location"] = options["key"]
    if "mechanism" in options:
        common["sasl.mechanism"] = options["mechanism"]
        if options["mechanism"] == "OAUTHBEARER":
            token = options["token"]
            common["oauth_cb"] = lambda _config: (token, time.time() + 3600)
        else:
            common["sasl.username"] = options["user"]
            common["sasl.password"] = options["password"]
    errors = []
    common["error_cb"] = errors.append
    if mode in ("roundtrip", "produce"):
        producer = Producer({**common, "acks": "all", "message.timeout.ms": 15000})
        delivered = []

        def report(error, message):
            if error is not None:
                errors.append(error)
            else:
                delivered.append(message.offset())
        pace = int(options.get("pace_ms", "0")) / 1000.0
        for value in values:
            producer.produce(topic, value=value, partition=0, on_delivery=report)
            if pace:
                producer.flush(10)
                time.sleep(pace)
        producer.flush(30)
        if len(delivered) != count:
            raise KafkaException(errors[0] if errors else "not all delivered")
    if mode in ("roundtrip", "consume"):
        consumer = Consumer({**common, "group.id": "secure-client", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = []
        deadline = time.time() + 20
        while len(seen) < count and time.time() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                errors.append(message.error())
                continue
            seen.append(message.value())
        consumer.close()
        if seen != values:
            raise KafkaException(errors[-1] if errors else f"read {len(seen)} of {count}")
    if mode == "metadata":
        producer = Producer(common)
        metadata = producer.list_topics(timeout=5)
        print("topics " + ",".join(sorted(metadata.topics)))


try:
    {"kafka-python": kafka_python, "confluent-kafka": confluent}[client]()
except Exception as error:  # the test reads the message
    fail(error)
print(f"ok {count}")
