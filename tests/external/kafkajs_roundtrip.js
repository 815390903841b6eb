// kafkajs against Sluice: admin, idempotent producer, consumer group.
const { Kafka, logLevel } = require('kafkajs');

const address = process.argv[2];
const topic = 'kafkajs-topic';
const count = 150;

async function main() {
  const kafka = new Kafka({ clientId: 'kafkajs-roundtrip', brokers: [address], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = Array.from({ length: count }, (_, i) => ({ key: `k${i % 5}`, value: `j${i}` }));
  await producer.send({ topic, messages, acks: -1 });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: 'kafkajs-group' });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${seen.size} of ${count}`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size === count) { clearTimeout(timer); resolve(); }
      },
    });
  });
  await consumer.disconnect();
  console.log(`kafkajs: ${count} idempotent messages consumed by a group`);
}

main().catch((error) => { console.error(error); process.exit(1); });
