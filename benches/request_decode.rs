//! Request decode: the CPU cost of turning a request frame into a typed request, through the
//! path the server takes (`server::handlers::handle`): peek the header, check the API/version
//! against `protocol::versions`, decode the request header (`protocol::frame`) and then the body
//! with the `kafka-protocol` crate (`protocol::frame::decode_body`). `records` fields come out as
//! slices of the frame (zero copy), so the cost should not grow with batch size.
//!
//! Frames are encoded by `sluice bench`'s client encoder (the same bytes a Kafka client sends):
//! Produce v9 with 1 and 16 partitions of one 16 KiB batch each, Fetch v12 with 16 partitions.
//! Throughput is frame bytes per second. Batch validation (CRC) is not included: see
//! `benches/batch.rs`.
//!
//! Produce is measured twice: through the crate (as above) and through the server's own
//! Produce decoder (`protocol::produce_request`), which is what the broker runs.
//!
//! Run: `cargo bench --bench request_decode`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::{
    fetch_request, produce_request, ApiKey, BrokerId, FetchRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use sluice::bench::client::{encode_request, topic_name};
use sluice::protocol::batch::{encode_batch, Record};
use sluice::protocol::frame::{self, FrameError};
use sluice::protocol::versions::supported_range;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const BATCH_BYTES: usize = 16 << 10;

/// A frame as the connection hands it to `handle`: without its 4-byte size prefix.
fn frame_of<Req>(api: ApiKey, version: i16, request: &Req) -> Bytes
where
    Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
{
    let mut out = BytesMut::new();
    let client_id = StrBytes::from_static_str("rdkafka");
    encode_request(api, version, 1, &client_id, request, &mut out).expect("encodable request");
    out.freeze().slice(4..)
}

fn batch_16k() -> Bytes {
    let value = vec![b'v'; BATCH_BYTES / 16];
    let key = b"key-00000001".to_vec();
    let rows: Vec<Record<'_>> = (0..16)
        .map(|_| (Some(&key[..]), Some(&value[..])))
        .collect();
    Bytes::from(encode_batch(&rows, 1_700_000_000_000))
}

fn produce_frame(partitions: i32) -> Bytes {
    let batch = batch_16k();
    let mut topic = produce_request::TopicProduceData::default();
    topic.name = topic_name("bench");
    for index in 0..partitions {
        let mut partition = produce_request::PartitionProduceData::default();
        partition.index = index;
        partition.records = Some(batch.clone());
        topic.partition_data.push(partition);
    }
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data.push(topic);
    frame_of(ApiKey::Produce, PRODUCE_VERSION, &request)
}

fn fetch_frame(partitions: i32) -> Bytes {
    let mut topic = fetch_request::FetchTopic::default();
    topic.topic = topic_name("bench");
    for partition in 0..partitions {
        let mut entry = fetch_request::FetchPartition::default();
        entry.partition = partition;
        entry.fetch_offset = 1_000_000 + i64::from(partition);
        entry.current_leader_epoch = -1;
        entry.log_start_offset = -1;
        entry.partition_max_bytes = 1 << 20;
        topic.partitions.push(entry);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    request.session_epoch = -1;
    request.topics.push(topic);
    frame_of(ApiKey::Fetch, FETCH_VERSION, &request)
}

/// What `server::handlers::handle` does before dispatching, then the handler's body decode.
fn decode<T: kafka_protocol::protocol::Decodable>(mut frame: Bytes) -> Result<T, FrameError> {
    let (api_key, api_version, _correlation_id) = frame::peek_header(&frame);
    let Some((api, min, max)) = supported_range(api_key) else {
        return Err(FrameError::UnknownApi { api_key });
    };
    assert!((min..=max).contains(&api_version), "version {api_version}");
    let _header = frame::decode_request_header(api, api_version, &mut frame)?;
    frame::decode_body(&mut frame, api_version)
}

fn request_decode(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("request_decode");
    for partitions in [1, 16] {
        let frame = produce_frame(partitions);
        let decoded: ProduceRequest = decode(frame.clone()).expect("decodes");
        let records = decoded.topic_data[0].partition_data[0].records.as_ref();
        let records = records.expect("records present");
        assert!(
            frame.as_ptr_range().contains(&records.as_ptr()),
            "records must be a slice of the frame (zero copy)"
        );
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(format!("produce_v9_{partitions}x16KiB"), |bencher| {
            bencher.iter(|| decode::<ProduceRequest>(black_box(frame.clone())).unwrap())
        });
        // What the server runs for Produce: its own decoder over the mutable frame, which
        // splits each partition's records off as a writable view (appended in place).
        group.bench_function(format!("produce_v9_{partitions}x16KiB_server"), |bencher| {
            bencher.iter_batched(
                || bytes::BytesMut::from(&frame[..]),
                |mut owned| {
                    let (api_key, api_version, _) = frame::peek_header(&owned);
                    let api = ApiKey::try_from(api_key).unwrap();
                    frame::decode_request_header(api, api_version, &mut owned).unwrap();
                    sluice::protocol::produce_request::decode(owned, api_version).unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let frame = fetch_frame(16);
    let decoded: FetchRequest = decode(frame.clone()).expect("decodes");
    assert_eq!(decoded.topics[0].partitions.len(), 16);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("fetch_v12_16_partitions", |bencher| {
        bencher.iter(|| decode::<FetchRequest>(black_box(frame.clone())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, request_decode);
criterion_main!(benches);
