//! Fetch response encoder (v4–v18), by hand: topic and partition headers are encoded into small
//! buffers and each partition's record batches are appended as the `Bytes` chunks the log handed
//! out (`ResponseBuilder::push_chunk`), so record bytes are never copied and the connection
//! writes the frame with one vectored `sendmsg`. Pure: no I/O, no shard state; the Fetch
//! handler (`server/handlers/fetch.rs`) decides what goes in, this file only lays it out.
//!
//! KIP-951: from v12 a partition may carry `current_leader` (tagged field 1), and from v16 the
//! response the endpoints of the leaders it names (`node_endpoints`, tagged field 0). KIP-320:
//! from v12 a partition may carry `diverging_epoch` (tagged field 0).

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::ApiKey;

use super::frame::wire::{
    put_array_length, put_bytes_length, put_empty_tagged_fields, put_string, put_unsigned_varint,
};
use super::frame::{ResponseBuilder, ResponseFrame};

/// First flexible (compact encoding, tagged fields) Fetch version.
const FETCH_FLEXIBLE_VERSION_MIN: i16 = 12;
/// First Fetch version that names topics by id instead of by name.
const FETCH_TOPIC_ID_VERSION_MIN: i16 = 13;

/// One partition of the answer. `topic_index` points into the `topics` passed to `encode`;
/// partitions of a topic are consecutive, in the order the request listed them.
#[derive(Debug, Clone, Copy)]
pub struct FetchPartition<'a> {
    pub topic_index: usize,
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole record batches as stored; pushed as chunks, not copied.
    pub records: &'a [Bytes],
    /// KIP-951: (leader id, leader epoch) for a client refused here (v12+).
    pub current_leader: Option<(i32, i32)>,
    /// KIP-320: (epoch, end offset) where the fetcher's log diverges from this one (v12+).
    pub diverging_epoch: Option<(i32, i64)>,
}

/// A broker named in `current_leader`, for `node_endpoints` (v16+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// First Fetch version with `node_endpoints`.
const FETCH_NODE_ENDPOINTS_VERSION_MIN: i16 = 16;
/// Tagged-field numbers (Kafka's FetchResponse.json).
const TAG_NODE_ENDPOINTS: u32 = 0;
const TAG_DIVERGING_EPOCH: u32 = 0;
const TAG_CURRENT_LEADER: u32 = 1;

impl FetchPartition<'_> {
    pub fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// Encodes a Fetch response of `api_version`: `topics` are (name, topic id) in request order,
/// `partitions` their partitions grouped by `topic_index`. Session id is always 0 (no fetch
/// sessions); last_stable_offset is the high watermark (no transactions).
pub fn encode(
    api_version: i16,
    correlation_id: i32,
    error_code: i16,
    topics: &[(String, [u8; 16])],
    partitions: &[FetchPartition<'_>],
    endpoints: &[NodeEndpoint],
) -> ResponseFrame {
    let flexible = api_version >= FETCH_FLEXIBLE_VERSION_MIN;
    let mut builder = ResponseBuilder::new(ApiKey::Fetch, api_version, correlation_id);
    let buffer = builder.buffer();
    buffer.put_i32(0); // throttle_time_ms
    if api_version >= 7 {
        buffer.put_i16(error_code);
        buffer.put_i32(0); // session_id: no session created
    }
    put_array_length(buffer, flexible, topics.len());
    let mut position = 0;
    for (topic_index, (name, topic_id)) in topics.iter().enumerate() {
        let buffer = builder.buffer();
        if api_version >= FETCH_TOPIC_ID_VERSION_MIN {
            buffer.put_slice(topic_id);
        } else {
            put_string(buffer, flexible, name);
        }
        let count = partitions[position..]
            .iter()
            .take_while(|partition| partition.topic_index == topic_index)
            .count();
        put_array_length(buffer, flexible, count);
        for partition in &partitions[position..position + count] {
            encode_partition(&mut builder, api_version, partition);
        }
        position += count;
        put_empty_tagged_fields(builder.buffer(), flexible);
    }
    assert_eq!(
        position,
        partitions.len(),
        "partitions not grouped by topic_index in topic order"
    );
    if api_version >= FETCH_NODE_ENDPOINTS_VERSION_MIN && !endpoints.is_empty() {
        let mut field = bytes::BytesMut::new();
        put_array_length(&mut field, true, endpoints.len());
        for endpoint in endpoints {
            field.put_i32(endpoint.node_id);
            put_string(&mut field, true, &endpoint.host);
            field.put_i32(endpoint.port);
            match &endpoint.rack {
                Some(rack) => put_string(&mut field, true, rack),
                None => put_unsigned_varint(&mut field, 0), // null compact string
            }
            put_empty_tagged_fields(&mut field, true);
        }
        put_tagged_field(builder.buffer(), TAG_NODE_ENDPOINTS, &field);
    } else {
        put_empty_tagged_fields(builder.buffer(), flexible);
    }
    builder.finish()
}

/// One tagged field as the only one of its struct: count 1, tag, size, data.
fn put_tagged_field(buffer: &mut bytes::BytesMut, tag: u32, data: &[u8]) {
    put_unsigned_varint(buffer, 1);
    put_unsigned_varint(buffer, tag);
    put_unsigned_varint(buffer, data.len() as u32);
    buffer.put_slice(data);
}

fn encode_partition(builder: &mut ResponseBuilder, api_version: i16, partition: &FetchPartition) {
    let flexible = api_version >= FETCH_FLEXIBLE_VERSION_MIN;
    let buffer = builder.buffer();
    buffer.put_i32(partition.partition_index);
    buffer.put_i16(partition.error_code);
    buffer.put_i64(partition.high_watermark);
    buffer.put_i64(partition.high_watermark); // last_stable_offset: no transactions yet
    if api_version >= 5 {
        buffer.put_i64(partition.log_start_offset);
    }
    // aborted_transactions: null
    if flexible {
        put_unsigned_varint(buffer, 0);
    } else {
        buffer.put_i32(-1);
    }
    if api_version >= 11 {
        buffer.put_i32(-1); // preferred_read_replica
    }
    put_bytes_length(buffer, flexible, Some(partition.records_bytes()));
    for chunk in partition.records {
        builder.push_chunk(chunk.clone());
    }
    if !flexible {
        return;
    }
    // Tagged fields, in ascending tag order.
    let mut fields: Vec<(u32, bytes::BytesMut)> = Vec::new();
    if let Some((epoch, end_offset)) = partition.diverging_epoch {
        let mut field = bytes::BytesMut::with_capacity(13);
        field.put_i32(epoch);
        field.put_i64(end_offset);
        put_empty_tagged_fields(&mut field, true);
        fields.push((TAG_DIVERGING_EPOCH, field));
    }
    if let Some((leader_id, leader_epoch)) = partition.current_leader {
        let mut field = bytes::BytesMut::with_capacity(9);
        field.put_i32(leader_id);
        field.put_i32(leader_epoch);
        put_empty_tagged_fields(&mut field, true);
        fields.push((TAG_CURRENT_LEADER, field));
    }
    let buffer = builder.buffer();
    put_unsigned_varint(buffer, fields.len() as u32);
    for (tag, data) in fields {
        put_unsigned_varint(buffer, tag);
        put_unsigned_varint(buffer, data.len() as u32);
        buffer.put_slice(&data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    /// Two topics, several partitions each, several chunks per partition: the reference codec
    /// decodes it at every version and every record chunk is the log's buffer, not a copy.
    #[test]
    fn chunks_are_borrowed_and_the_reference_codec_decodes() {
        let batch = Bytes::from(crate::protocol::batch::encode_batch(
            &[(Some(b"k"), Some(b"v"))],
            1,
        ));
        let chunks = vec![batch.clone(), batch.clone(), batch.clone()];
        let topics = vec![("a".to_string(), [1u8; 16]), ("b".to_string(), [2u8; 16])];
        let partitions: Vec<FetchPartition<'_>> = [(0, 0), (0, 1), (1, 0), (1, 5)]
            .iter()
            .map(|&(topic_index, partition_index)| FetchPartition {
                topic_index,
                partition_index,
                error_code: 0,
                high_watermark: 9,
                log_start_offset: 0,
                records: &chunks,
                current_leader: (partition_index == 5).then_some((3, 7)),
                // Both tagged fields on one partition, and one alone on another.
                diverging_epoch: matches!(partition_index, 1 | 5).then_some((4, 42)),
            })
            .collect();
        let endpoints = vec![NodeEndpoint {
            node_id: 3,
            host: "127.0.0.3".to_string(),
            port: 9092,
            rack: None,
        }];
        for version in 4..=18 {
            let frame = encode(version, 7, 0, &topics, &partitions, &endpoints);
            let borrowed = frame
                .chunks
                .iter()
                .filter(|chunk| chunk.as_ptr() == batch.as_ptr())
                .count();
            assert_eq!(borrowed, 3 * partitions.len(), "v{version}");
            let mut flat = Bytes::from(frame.chunks.concat());
            let size = bytes::Buf::get_i32(&mut flat) as usize;
            assert_eq!(size, flat.len());
            assert_eq!(bytes::Buf::get_i32(&mut flat), 7);
            if version >= 12 {
                assert_eq!(bytes::Buf::get_u8(&mut flat), 0);
            }
            let decoded = FetchResponse::decode(&mut flat, version).unwrap();
            assert_eq!(flat.len(), 0, "v{version}: trailing bytes");
            assert_eq!(decoded.responses.len(), 2);
            let second = &decoded.responses[1].partitions;
            assert_eq!(second.len(), 2);
            assert_eq!(second[1].partition_index, 5);
            assert_eq!(second[1].records.as_ref().unwrap().len(), batch.len() * 3);
            if version >= 12 {
                assert_eq!(second[1].current_leader.leader_id.0, 3, "v{version}");
                assert_eq!(second[1].current_leader.leader_epoch, 7, "v{version}");
                assert_eq!(second[0].current_leader.leader_id.0, -1, "v{version}");
                assert_eq!(second[1].diverging_epoch.epoch, 4, "v{version}");
                assert_eq!(second[1].diverging_epoch.end_offset, 42, "v{version}");
                assert_eq!(second[0].diverging_epoch.epoch, -1, "v{version}");
                let first = &decoded.responses[0].partitions;
                assert_eq!(first[1].diverging_epoch.end_offset, 42, "v{version}");
                assert_eq!(first[1].current_leader.leader_id.0, -1, "v{version}");
            }
            if version >= 16 {
                assert_eq!(decoded.node_endpoints.len(), 1, "v{version}");
                assert_eq!(decoded.node_endpoints[0].node_id.0, 3);
                assert_eq!(decoded.node_endpoints[0].host.as_str(), "127.0.0.3");
                assert_eq!(decoded.node_endpoints[0].rack, None);
            }
        }
    }
}
