//! A small blocking Kafka client on `kafka-protocol` structs: framing, API version negotiation,
//! and the admin requests the bench needs (Metadata, CreateTopics, ListOffsets). Produce and
//! Fetch requests are built by `producer.rs` and `consumer.rs` and sent through the same framing.
//! The operator commands (`sluice topic|group|cluster|produce|consume`, in `cli/`) use the same
//! connection with `Connection::call`, which picks each request's version from what the broker
//! offered in ApiVersions.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use thiserror::Error;

/// A response bigger than this is refused: fetch responses are bounded by the request's
/// `max_bytes` (`FETCH_MAX_BYTES`) and everything else is small.
pub const RESPONSE_BYTES_MAX: usize = 128 << 20;
/// `max_bytes` of one Fetch request.
pub const FETCH_MAX_BYTES: i32 = 64 << 20;
/// Connect and admin-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("{address}: malformed {api:?} response: {message}")]
    Malformed {
        address: String,
        api: ApiKey,
        message: String,
    },
    #[error(
        "{address}: {api:?} versions {min}..={max} are not supported by the broker ({broker})"
    )]
    NoCommonVersion {
        address: String,
        api: ApiKey,
        min: i16,
        max: i16,
        broker: String,
    },
    #[error("{context}: {}", error_text(*error_code))]
    Kafka { context: String, error_code: i16 },
    #[error("{0}")]
    Other(String),
}

/// A Kafka error code as Kafka names it, with its number (`UNKNOWN_TOPIC_OR_PARTITION (3)`).
pub fn error_text(error_code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(error_code) {
        Some(kafka_protocol::error::ResponseError::Unknown(_)) | None => {
            format!("Kafka error code {error_code}")
        }
        Some(error) => format!("{} ({error_code})", screaming_snake(&error.to_string())),
    }
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION` (Kafka's own spelling of its codes).
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (index, character) in camel.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

/// The versions one broker offered in ApiVersions: api key -> (lowest, highest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerApis(pub BTreeMap<i16, (i16, i16)>);

impl BrokerApis {
    pub fn from_response(response: &ApiVersionsResponse) -> BrokerApis {
        BrokerApis(
            response
                .api_keys
                .iter()
                .map(|entry| (entry.api_key, (entry.min_version, entry.max_version)))
                .collect(),
        )
    }

    /// The highest version of `R` both sides speak, this client speaking `lowest..=highest`.
    pub fn version<R: Request>(
        &self,
        address: &str,
        lowest: i16,
        highest: i16,
    ) -> Result<i16, ClientError> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|()| ClientError::Other(format!("unknown api key {}", R::KEY)))?;
        let ours = (lowest.max(R::VERSIONS.min), highest.min(R::VERSIONS.max));
        let chosen = self.0.get(&R::KEY).and_then(|&(min, max)| {
            let high = max.min(ours.1);
            (high >= min.max(ours.0)).then_some(high)
        });
        chosen.ok_or_else(|| ClientError::NoCommonVersion {
            address: address.to_string(),
            api,
            min: ours.0,
            max: ours.1,
            broker: self
                .0
                .get(&R::KEY)
                .map_or("absent".into(), |(min, max)| format!("{min}..={max}")),
        })
    }
}

/// The request versions used with one broker: the highest each side supports, within what this
/// client encodes (Produce up to 12 and Fetch up to 12, before topic ids replace names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub metadata: i16,
    pub create_topics: i16,
}

/// (api, lowest, highest) this client speaks.
const CLIENT_VERSIONS: [(ApiKey, i16, i16); 5] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
];

impl Versions {
    /// Picks versions from an ApiVersions response. CreateTopics may be missing (then 0 and
    /// `--create-topic` fails with a clear message); the others are required.
    pub fn negotiate(
        address: &str,
        response: &ApiVersionsResponse,
    ) -> Result<Versions, ClientError> {
        let mut chosen = [0i16; 5];
        for (slot, (api, min, max)) in CLIENT_VERSIONS.iter().enumerate() {
            let broker = response
                .api_keys
                .iter()
                .find(|entry| entry.api_key == *api as i16);
            let version = broker.and_then(|entry| {
                let high = entry.max_version.min(*max);
                (high >= entry.min_version.max(*min)).then_some(high)
            });
            match version {
                Some(version) => chosen[slot] = version,
                None if *api == ApiKey::CreateTopics => chosen[slot] = 0,
                None => {
                    return Err(ClientError::NoCommonVersion {
                        address: address.to_string(),
                        api: *api,
                        min: *min,
                        max: *max,
                        broker: broker.map_or("absent".into(), |entry| {
                            format!("{}..={}", entry.min_version, entry.max_version)
                        }),
                    })
                }
            }
        }
        Ok(Versions {
            produce: chosen[0],
            fetch: chosen[1],
            list_offsets: chosen[2],
            metadata: chosen[3],
            create_topics: chosen[4],
        })
    }
}

pub fn topic_name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

/// Encodes header + body into `out` as one frame with its size prefix.
pub fn encode_request<Req: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    request: &Req,
    out: &mut BytesMut,
) -> Result<(), ClientError> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    header
        .encode(out, Req::header_version(version))
        .and_then(|()| request.encode(out, version))
        .map_err(|error| ClientError::Other(format!("cannot encode {api:?}: {error}")))?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Reads one response frame (without its size prefix).
pub fn read_frame(stream: &mut impl Read, address: &str) -> Result<Bytes, ClientError> {
    let io = |source| ClientError::Io {
        address: address.to_string(),
        source,
    };
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(io)?;
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > RESPONSE_BYTES_MAX {
        return Err(ClientError::Other(format!(
            "{address}: response frame of {size} bytes (limit {RESPONSE_BYTES_MAX})"
        )));
    }
    let mut frame = vec![0u8; size as usize];
    stream.read_exact(&mut frame).map_err(io)?;
    Ok(Bytes::from(frame))
}

/// Checks the correlation id, skips the response header and decodes the body.
pub fn decode_response<Resp: Decodable>(
    address: &str,
    api: ApiKey,
    version: i16,
    mut frame: Bytes,
    correlation_id: i32,
) -> Result<Resp, ClientError> {
    let malformed = |message: String| ClientError::Malformed {
        address: address.to_string(),
        api,
        message,
    };
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|error| malformed(error.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(malformed(format!(
            "correlation id {} where {correlation_id} was expected",
            header.correlation_id
        )));
    }
    Resp::decode(&mut frame, version).map_err(|error| malformed(error.to_string()))
}

/// The socket under a `Connection`: plain TCP, or TLS (rustls) for SSL and SASL_SSL listeners.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl ClientStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Tls(tls) => tls.get_ref(),
        }
    }

    /// The TCP socket alone, for a second thread that reads responses (plain TCP only: a TLS
    /// session cannot be shared between threads this way).
    pub fn try_clone_plain(&self) -> std::io::Result<TcpStream> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_clone(),
            ClientStream::Tls(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the benchmark producer speaks plaintext only",
            )),
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.read(buffer),
            ClientStream::Tls(tls) => tls.read(buffer),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.write(bytes),
            ClientStream::Tls(tls) => tls.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(tcp) => tcp.flush(),
            ClientStream::Tls(tls) => tls.flush(),
        }
    }
}

/// One blocking connection for request/response exchanges.
pub struct Connection {
    pub stream: ClientStream,
    pub address: String,
    pub client_id: StrBytes,
    correlation_id: i32,
    /// What the broker offered (set by `negotiate`).
    apis: BrokerApis,
}

impl Connection {
    pub fn connect(address: &str, client_id: &str) -> Result<Connection, ClientError> {
        Connection::connect_with(address, client_id, None)
    }

    /// `connect`, through TLS when `tls` is given (the broker's name checked against the
    /// host of `address`).
    pub fn connect_with(
        address: &str,
        client_id: &str,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Connection, ClientError> {
        let io = |source| ClientError::Io {
            address: address.to_string(),
            source,
        };
        let socket_address = address
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| ClientError::Other(format!("{address}: no address")))?;
        let stream = TcpStream::connect_timeout(&socket_address, REQUEST_TIMEOUT).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let stream = match tls {
            None => ClientStream::Plain(stream),
            Some(config) => {
                let host = address
                    .rsplit_once(':')
                    .map_or(address, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|error| ClientError::Other(format!("{address}: {error}")))?;
                let mut session = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|error| ClientError::Other(format!("{address}: TLS: {error}")))?;
                // The handshake now, within the request timeout, so a failure names TLS.
                stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
                let mut tcp = stream;
                while session.is_handshaking() {
                    session.complete_io(&mut tcp).map_err(|error| {
                        ClientError::Other(format!("{address}: TLS handshake: {error}"))
                    })?;
                }
                tcp.set_read_timeout(None).map_err(io)?;
                ClientStream::Tls(Box::new(rustls::StreamOwned::new(session, tcp)))
            }
        };
        Ok(Connection {
            stream,
            address: address.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            correlation_id: 0,
            apis: BrokerApis::default(),
        })
    }

    /// Connects and asks ApiVersions, for `call`.
    pub fn open(address: &str, client_id: &str) -> Result<Connection, ClientError> {
        Connection::open_with(address, client_id, None)
    }

    /// `open`, through TLS when `tls` is given.
    pub fn open_with(
        address: &str,
        client_id: &str,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Connection, ClientError> {
        let mut connection = Connection::connect_with(address, client_id, tls)?;
        connection.negotiate()?;
        Ok(connection)
    }

    /// SASL on this connection (SaslHandshake v1, then SaslAuthenticate until the exchange
    /// ends): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. A SCRAM server must prove it knows the
    /// credential too.
    pub fn authenticate(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &str,
    ) -> Result<(), ClientError> {
        use crate::security::scram::{ScramClient, ScramMechanism};
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
            SaslHandshakeResponse,
        };
        let context = format!("{}: SASL {mechanism}", self.address);
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_string(mechanism.to_string());
        let answer: SaslHandshakeResponse = self.call_at(1, &handshake)?;
        if answer.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!(
                    "{context} (the broker offers {:?})",
                    answer
                        .mechanisms
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                ),
                error_code: answer.error_code,
            });
        }
        let step = |connection: &mut Connection, token: Vec<u8>| {
            let mut request = SaslAuthenticateRequest::default();
            request.auth_bytes = bytes::Bytes::from(token);
            let version = connection.version::<SaslAuthenticateRequest>(0, 2)?;
            let response: SaslAuthenticateResponse = connection.call_at(version, &request)?;
            if response.error_code != 0 {
                return Err(ClientError::Kafka {
                    context: format!(
                        "{context}: {}",
                        response
                            .error_message
                            .map(|m| m.to_string())
                            .unwrap_or_default()
                    ),
                    error_code: response.error_code,
                });
            }
            Ok(response.auth_bytes.to_vec())
        };
        match ScramMechanism::parse(mechanism) {
            None if mechanism == "PLAIN" => {
                step(self, format!("\0{user}\0{password}").into_bytes())?;
            }
            None => {
                return Err(ClientError::Other(format!(
                    "unknown SASL mechanism {mechanism}"
                )))
            }
            Some(scram) => {
                let mut client = ScramClient::new(scram, user, password);
                let server_first = step(self, client.first_message())?;
                let last = client
                    .final_message(&server_first)
                    .map_err(ClientError::Other)?;
                let server_final = step(self, last)?;
                client
                    .verify_server(&server_final)
                    .map_err(ClientError::Other)?;
            }
        }
        Ok(())
    }

    /// Sends `request` at the highest version both sides speak within `lowest..=highest` (the
    /// versions whose fields the caller fills) and waits for its response.
    pub fn call<R: Request>(
        &mut self,
        lowest: i16,
        highest: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let version = self.version::<R>(lowest, highest)?;
        self.call_at(version, request)
    }

    /// `call` at a version the caller chose (with `version`).
    pub fn call_at<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|()| ClientError::Other(format!("unknown api key {}", R::KEY)))?;
        self.request(api, version, request)
    }

    /// The version `call` would use.
    pub fn version<R: Request>(&self, lowest: i16, highest: i16) -> Result<i16, ClientError> {
        self.apis.version::<R>(&self.address, lowest, highest)
    }

    pub fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.correlation_id
    }

    /// Sends one request and waits for its response.
    pub fn request<Req: Encodable + HeaderVersion, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let address = self.address.clone();
        let io = |source| ClientError::Io {
            address: address.clone(),
            source,
        };
        self.stream
            .tcp()
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io)?;
        let correlation_id = self.send_only(api, version, request)?;
        let response = read_frame(&mut self.stream, &self.address)?;
        self.stream.tcp().set_read_timeout(None).map_err(io)?;
        decode_response(&self.address, api, version, response, correlation_id)
    }

    /// Writes one request without waiting for its response (a Produce with acks=0 gets none);
    /// returns its correlation id.
    pub fn send_only<Req: Encodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id();
        let mut frame = BytesMut::new();
        encode_request(
            api,
            version,
            correlation_id,
            &self.client_id,
            request,
            &mut frame,
        )?;
        self.stream
            .write_all(&frame)
            .map_err(|source| ClientError::Io {
                address: self.address.clone(),
                source,
            })?;
        Ok(correlation_id)
    }

    /// ApiVersions v0 (answered by every broker since Kafka 0.10) and version negotiation.
    pub fn negotiate(&mut self) -> Result<Versions, ClientError> {
        let response: ApiVersionsResponse =
            self.request(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("{}: ApiVersions", self.address),
                error_code: response.error_code,
            });
        }
        self.apis = BrokerApis::from_response(&response);
        Versions::negotiate(&self.address, &response)
    }
}

/// Partitions of a topic and where their leaders listen (the advertised addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLayout {
    /// partition -> leader address, for every partition.
    pub leaders: BTreeMap<i32, String>,
}

impl TopicLayout {
    pub fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }
}

/// Kafka error codes the bench treats as "not ready yet, ask again".
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Metadata for one topic: `Ok(None)` while it does not exist or a leader is missing.
pub fn describe_topic(
    connection: &mut Connection,
    versions: &Versions,
    topic: &str,
) -> Result<Option<TopicLayout>, ClientError> {
    let mut request = MetadataRequest::default();
    let mut wanted = metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(topic_name(topic));
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = false;
    let response: MetadataResponse =
        connection.request(ApiKey::Metadata, versions.metadata, &request)?;
    let Some(found) = response.topics.first() else {
        return Ok(None);
    };
    match found.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION | LEADER_NOT_AVAILABLE => return Ok(None),
        error_code => {
            return Err(ClientError::Kafka {
                context: format!("Metadata for topic {topic}"),
                error_code,
            })
        }
    }
    let brokers: BTreeMap<i32, String> = response
        .brokers
        .iter()
        .map(|broker| (broker.node_id.0, format!("{}:{}", broker.host, broker.port)))
        .collect();
    let mut leaders = BTreeMap::new();
    for partition in &found.partitions {
        match brokers.get(&partition.leader_id.0) {
            Some(address) if partition.error_code == 0 => {
                leaders.insert(partition.partition_index, address.clone());
            }
            _ => return Ok(None),
        }
    }
    let dense = leaders.keys().copied().eq(0..leaders.len() as i32);
    if leaders.is_empty() || !dense {
        return Ok(None);
    }
    Ok(Some(TopicLayout { leaders }))
}

/// CreateTopics; an existing topic is fine (it is used as it is).
pub fn create_topic(
    connection: &mut Connection,
    versions: &Versions,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> Result<(), ClientError> {
    if versions.create_topics == 0 {
        return Err(ClientError::Other(format!(
            "{}: the broker does not offer CreateTopics v2+",
            connection.address
        )));
    }
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = REQUEST_TIMEOUT.as_millis() as i32;
    let mut creatable = create_topics_request::CreatableTopic::default();
    creatable.name = topic_name(topic);
    creatable.num_partitions = partitions;
    creatable.replication_factor = replication_factor;
    for (key, value) in configs {
        let mut config = create_topics_request::CreatableTopicConfig::default();
        config.name = StrBytes::from_string(key.clone());
        config.value = Some(StrBytes::from_string(value.clone()));
        creatable.configs.push(config);
    }
    request.topics.push(creatable);
    let response: CreateTopicsResponse =
        connection.request(ApiKey::CreateTopics, versions.create_topics, &request)?;
    for result in response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            return Err(ClientError::Kafka {
                context: format!(
                    "CreateTopics {topic}: {}",
                    result.error_message.as_deref().unwrap_or("")
                ),
                error_code: result.error_code,
            });
        }
    }
    Ok(())
}

/// Polls Metadata until the topic has a leader for every partition.
pub fn wait_for_topic(
    connection: &mut Connection,
    versions: &Versions,
    topic: &str,
    timeout: Duration,
) -> Result<TopicLayout, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(layout) = describe_topic(connection, versions, topic)? {
            return Ok(layout);
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Other(format!(
                "topic {topic} has no leader for every partition after {timeout:?} \
                 (use --create-topic to create it)"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ListOffsets timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

/// Offsets of `partitions` at `timestamp` (latest or earliest), asked of their leader.
pub fn list_offsets(
    connection: &mut Connection,
    versions: &Versions,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    let mut wanted = list_offsets_request::ListOffsetsTopic::default();
    wanted.name = topic_name(topic);
    for &partition in partitions {
        let mut entry = list_offsets_request::ListOffsetsPartition::default();
        entry.partition_index = partition;
        entry.timestamp = timestamp;
        entry.current_leader_epoch = -1;
        wanted.partitions.push(entry);
    }
    request.topics.push(wanted);
    let response: ListOffsetsResponse =
        connection.request(ApiKey::ListOffsets, versions.list_offsets, &request)?;
    let mut offsets = BTreeMap::new();
    for topic_response in response.topics {
        for partition in topic_response.partitions {
            if partition.error_code != 0 {
                return Err(ClientError::Kafka {
                    context: format!("ListOffsets {topic}-{}", partition.partition_index),
                    error_code: partition.error_code,
                });
            }
            offsets.insert(partition.partition_index, partition.offset);
        }
    }
    if let Some(missing) = partitions.iter().find(|p| !offsets.contains_key(p)) {
        return Err(ClientError::Other(format!(
            "ListOffsets: no answer for {topic}-{missing}"
        )));
    }
    Ok(offsets)
}

/// Groups partitions by leader address.
pub fn by_leader(
    leaders: &BTreeMap<i32, String>,
    partitions: &[i32],
) -> BTreeMap<String, Vec<i32>> {
    let mut grouped: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for partition in partitions {
        grouped
            .entry(leaders[partition].clone())
            .or_default()
            .push(*partition);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(api_key: ApiKey, min: i16, max: i16) -> api_versions_response::ApiVersion {
        let mut entry = api_versions_response::ApiVersion::default();
        entry.api_key = api_key as i16;
        entry.min_version = min;
        entry.max_version = max;
        entry
    }

    #[test]
    fn negotiation_takes_the_highest_common_version() {
        let mut response = ApiVersionsResponse::default();
        response.api_keys = vec![
            api(ApiKey::Produce, 3, 13),
            api(ApiKey::Fetch, 4, 8),
            api(ApiKey::ListOffsets, 1, 10),
            api(ApiKey::Metadata, 0, 13),
        ];
        let versions = Versions::negotiate("b", &response).unwrap();
        assert_eq!(versions.produce, 12);
        assert_eq!(versions.fetch, 8);
        assert_eq!(versions.list_offsets, 9);
        assert_eq!(versions.metadata, 12);
        assert_eq!(
            versions.create_topics, 0,
            "absent: only --create-topic fails"
        );
        response.api_keys[1] = api(ApiKey::Fetch, 0, 3);
        assert!(matches!(
            Versions::negotiate("b", &response),
            Err(ClientError::NoCommonVersion {
                api: ApiKey::Fetch,
                ..
            })
        ));
    }

    #[test]
    fn request_frames_round_trip_through_the_codec() {
        let mut frame = BytesMut::new();
        let client_id = StrBytes::from_static_str("bench");
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![]);
        encode_request(ApiKey::Metadata, 12, 77, &client_id, &request, &mut frame).unwrap();
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(size, frame.len() - 4);
        let mut body = Bytes::from(frame[4..].to_vec());
        let header = RequestHeader::decode(&mut body, 2).unwrap();
        assert_eq!(header.correlation_id, 77);
        let decoded = MetadataRequest::decode(&mut body, 12).unwrap();
        assert_eq!(decoded.topics, Some(vec![]));
    }
}
