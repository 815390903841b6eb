//! A trivial Kafka-protocol sink: answers ApiVersions, Metadata, CreateTopics, ListOffsets,
//! Produce (success, nothing stored) and Fetch (always empty). `sluice bench produce --sink`
//! runs it in-process so the generator's own ceiling can be measured; `sluice bench sink` runs
//! it alone. One blocking thread per connection; responses go back in request order.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::protocol::frame::{decode_request_header, encode_response, peek_header, FrameError};

/// The sink's own request size limit (Kafka's `socket.request.max.bytes` default).
const REQUEST_BYTES_MAX: usize = 100 << 20;
/// Longest a Fetch is held before its empty answer (the client's `max_wait_ms` if smaller).
const FETCH_WAIT_MAX: Duration = Duration::from_millis(500);

/// (api, min, max) the sink advertises.
const SINK_APIS: [(ApiKey, i16, i16); 6] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
];

/// Binds `listen` and serves connections on background threads; returns the bound address.
pub fn start(listen: &str, partitions: i32) -> std::io::Result<String> {
    let listener = TcpListener::bind(listen)?;
    let address = listener.local_addr()?.to_string();
    let advertised = address.clone();
    std::thread::Builder::new()
        .name("bench-sink".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let advertised = advertised.clone();
                let spawned = std::thread::Builder::new()
                    .name("bench-sink-conn".into())
                    .spawn(move || {
                        if let Err(error) = serve_connection(stream, &advertised, partitions) {
                            log::debug!("sink connection closed: {error}");
                        }
                    });
                if let Err(error) = spawned {
                    log::warn!("sink: cannot start a connection thread: {error}");
                }
            }
        })?;
    Ok(address)
}

#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("request of {0} bytes")]
    BadSize(i32),
}

fn serve_connection(
    mut stream: TcpStream,
    advertised: &str,
    partitions: i32,
) -> Result<(), SinkError> {
    stream.set_nodelay(true)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let mut base_offset = 0i64;
    loop {
        let mut size = [0u8; 4];
        match reader.read_exact(&mut size) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        let size = i32::from_be_bytes(size);
        if size < 8 || size as usize > REQUEST_BYTES_MAX {
            return Err(SinkError::BadSize(size));
        }
        let mut frame = vec![0u8; size as usize];
        reader.read_exact(&mut frame)?;
        let (api_key, api_version, correlation_id) = peek_header(&frame);
        let api = ApiKey::try_from(api_key).map_err(|()| FrameError::UnknownApi { api_key })?;
        let mut frame = Bytes::from(frame);
        let answer = if api == ApiKey::ApiVersions && api_version > 3 {
            encode_response(api, 0, correlation_id, &api_versions(35))?
        } else {
            decode_request_header(api, api_version, &mut frame)?;
            let Some(answer) = answer(
                api,
                api_version,
                correlation_id,
                frame,
                advertised,
                partitions,
                &mut base_offset,
            )?
            else {
                continue;
            };
            answer
        };
        for chunk in &answer.chunks {
            stream.write_all(chunk)?;
        }
    }
}

fn answer(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
    advertised: &str,
    partitions: i32,
    base_offset: &mut i64,
) -> Result<Option<crate::protocol::frame::ResponseFrame>, SinkError> {
    let malformed = |error| FrameError::malformed("request body", error);
    let response = match api {
        ApiKey::ApiVersions => encode_response(api, version, correlation_id, &api_versions(0))?,
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut body, version).map_err(malformed)?;
            encode_response(
                api,
                version,
                correlation_id,
                &metadata(&request, advertised, partitions),
            )?
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(&mut body, version).map_err(malformed)?;
            let mut response = CreateTopicsResponse::default();
            for topic in request.topics {
                let mut result = create_topics_response::CreatableTopicResult::default();
                result.name = topic.name;
                result.num_partitions = partitions;
                result.replication_factor = 1;
                response.topics.push(result);
            }
            encode_response(api, version, correlation_id, &response)?
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut body, version).map_err(malformed)?;
            let mut response = ListOffsetsResponse::default();
            for topic in request.topics {
                let mut answer = list_offsets_response::ListOffsetsTopicResponse::default();
                answer.name = topic.name;
                for partition in topic.partitions {
                    let mut entry = list_offsets_response::ListOffsetsPartitionResponse::default();
                    entry.partition_index = partition.partition_index;
                    entry.timestamp = -1;
                    entry.offset = 0;
                    answer.partitions.push(entry);
                }
                response.topics.push(answer);
            }
            encode_response(api, version, correlation_id, &response)?
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut body, version).map_err(malformed)?;
            if request.acks == 0 {
                return Ok(None);
            }
            let mut response = ProduceResponse::default();
            for topic in request.topic_data {
                let mut answer = produce_response::TopicProduceResponse::default();
                answer.name = topic.name;
                for partition in topic.partition_data {
                    let mut entry = produce_response::PartitionProduceResponse::default();
                    entry.index = partition.index;
                    entry.base_offset = *base_offset;
                    *base_offset += 1;
                    answer.partition_responses.push(entry);
                }
                response.responses.push(answer);
            }
            encode_response(api, version, correlation_id, &response)?
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(&mut body, version).map_err(malformed)?;
            let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MAX);
            std::thread::sleep(wait);
            let mut response = FetchResponse::default();
            for topic in request.topics {
                let mut answer = fetch_response::FetchableTopicResponse::default();
                answer.topic = topic.topic;
                answer.topic_id = topic.topic_id;
                for partition in topic.partitions {
                    let mut entry = fetch_response::PartitionData::default();
                    entry.partition_index = partition.partition;
                    entry.high_watermark = 0;
                    entry.records = Some(Bytes::new());
                    answer.partitions.push(entry);
                }
                response.responses.push(answer);
            }
            encode_response(api, version, correlation_id, &response)?
        }
        other => {
            return Err(FrameError::UnknownApi {
                api_key: other as i16,
            }
            .into())
        }
    };
    Ok(Some(response))
}

fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    for (api, min, max) in SINK_APIS {
        let mut entry = api_versions_response::ApiVersion::default();
        entry.api_key = api as i16;
        entry.min_version = min;
        entry.max_version = max;
        response.api_keys.push(entry);
    }
    response
}

fn metadata(request: &MetadataRequest, advertised: &str, partitions: i32) -> MetadataResponse {
    let (host, port) = advertised.rsplit_once(':').unwrap_or((advertised, "0"));
    let mut broker = metadata_response::MetadataResponseBroker::default();
    broker.node_id = BrokerId(0);
    broker.host = StrBytes::from_string(host.to_string());
    broker.port = port.parse().unwrap_or(0);
    let mut response = MetadataResponse::default();
    response.brokers.push(broker);
    response.controller_id = BrokerId(0);
    response.cluster_id = Some(StrBytes::from_static_str("sluice-bench-sink"));
    for wanted in request.topics.iter().flatten() {
        let mut topic = metadata_response::MetadataResponseTopic::default();
        topic.name = wanted.name.clone();
        for index in 0..partitions {
            let mut partition = metadata_response::MetadataResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = BrokerId(0);
            partition.replica_nodes = vec![BrokerId(0)];
            partition.isr_nodes = vec![BrokerId(0)];
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
    }
    response
}
