//! Frames: the 4-byte size prefix, request header peeking, and response frames built as a list of
//! `Bytes` chunks so record bytes can be sent straight from the log with a vectored write.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

/// api_key (2) + api_version (2) + correlation_id (4): the smallest possible request body.
pub const REQUEST_HEADER_BYTES_MIN: usize = 8;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge { size: i64, max: u32 },
    #[error("frame of {size} bytes is too small for a request header")]
    TooSmall { size: i64 },
    #[error("unknown api key {api_key}")]
    UnknownApi { api_key: i16 },
    #[error("unsupported version {api_version} of {api:?} (supported {min}..={max})")]
    UnsupportedVersion {
        api: ApiKey,
        api_version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// A request the connection may not send in its state (before SASL authentication).
    #[error("{api:?} refused: {reason}")]
    Refused { api: ApiKey, reason: String },
}

impl FrameError {
    pub fn malformed(what: &'static str, error: impl std::fmt::Display) -> FrameError {
        FrameError::Malformed {
            what,
            message: error.to_string(),
        }
    }
}

/// Checks a size prefix before the frame is read.
pub fn check_frame_size(size: i32, max: u32) -> Result<usize, FrameError> {
    let size = i64::from(size);
    if size > i64::from(max) {
        return Err(FrameError::TooLarge { size, max });
    }
    if size < REQUEST_HEADER_BYTES_MIN as i64 {
        return Err(FrameError::TooSmall { size });
    }
    Ok(size as usize)
}

/// (api_key, api_version, correlation_id) read without consuming the frame.
pub fn peek_header(frame: &[u8]) -> (i16, i16, i32) {
    assert!(
        frame.len() >= REQUEST_HEADER_BYTES_MIN,
        "len={}",
        frame.len()
    );
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    (api_key, api_version, correlation_id)
}

/// Decodes the request header, leaving `frame` at the start of the body.
pub fn decode_request_header<B: kafka_protocol::protocol::buf::ByteBuf>(
    api: ApiKey,
    api_version: i16,
    frame: &mut B,
) -> Result<RequestHeader, FrameError> {
    let header_version = api.request_header_version(api_version);
    RequestHeader::decode(frame, header_version)
        .map_err(|error| FrameError::malformed("request header", error))
}

/// Decodes a request body. Trailing bytes after the body are ignored, as Kafka does.
pub fn decode_body<T: Decodable>(body: &mut Bytes, api_version: i16) -> Result<T, FrameError> {
    let message = T::decode(body, api_version)
        .map_err(|error| FrameError::malformed("request body", error))?;
    Ok(message)
}

/// A response ready to write: the first chunk starts with the size prefix.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    pub chunks: Vec<Bytes>,
    /// Close the connection once this response is written (a failed SASL authentication).
    pub close_after: bool,
}

impl ResponseFrame {
    pub fn len_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }
}

/// Builds a response frame whose body is partly hand-encoded and partly borrowed chunks.
pub struct ResponseBuilder {
    chunks: Vec<Bytes>,
    current: BytesMut,
    total_bytes: usize,
}

impl ResponseBuilder {
    /// Starts a frame: size placeholder, correlation id, and the header's tagged fields for
    /// flexible response headers (v1).
    pub fn new(api: ApiKey, api_version: i16, correlation_id: i32) -> ResponseBuilder {
        let mut current = BytesMut::with_capacity(256);
        current.put_i32(0);
        current.put_i32(correlation_id);
        if api.response_header_version(api_version) >= 1 {
            current.put_u8(0);
        }
        ResponseBuilder {
            chunks: Vec::new(),
            current,
            total_bytes: 0,
        }
    }

    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.current
    }

    /// Appends a borrowed chunk (record bytes) without copying.
    pub fn push_chunk(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if !self.current.is_empty() {
            let encoded = self.current.split().freeze();
            self.total_bytes += encoded.len();
            self.chunks.push(encoded);
        }
        self.total_bytes += chunk.len();
        self.chunks.push(chunk);
    }

    pub fn finish(mut self) -> ResponseFrame {
        if !self.current.is_empty() {
            let encoded = self.current.split().freeze();
            self.total_bytes += encoded.len();
            self.chunks.push(encoded);
        }
        let size = (self.total_bytes - 4) as i32;
        let first = &mut self.chunks[0];
        let mut patched = BytesMut::from(&first[..]);
        patched[..4].copy_from_slice(&size.to_be_bytes());
        *first = patched.freeze();
        ResponseFrame {
            chunks: self.chunks,
            close_after: false,
        }
    }
}

/// Encodes a whole response message with the crate's encoder.
pub fn encode_response<M: Encodable>(
    api: ApiKey,
    api_version: i16,
    correlation_id: i32,
    message: &M,
) -> Result<ResponseFrame, FrameError> {
    let mut builder = ResponseBuilder::new(api, api_version, correlation_id);
    message
        .encode(builder.buffer(), api_version)
        .map_err(|error| FrameError::malformed("response encoding", error))?;
    Ok(builder.finish())
}

/// Hand encoding helpers for the flexible (compact) and classic forms.
pub mod wire {
    use bytes::{BufMut, BytesMut};

    pub fn put_unsigned_varint(buffer: &mut BytesMut, mut value: u32) {
        while value >= 0x80 {
            buffer.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        buffer.put_u8(value as u8);
    }

    /// Array length: compact (N+1 varint) for flexible versions, i32 otherwise.
    pub fn put_array_length(buffer: &mut BytesMut, flexible: bool, length: usize) {
        if flexible {
            put_unsigned_varint(buffer, length as u32 + 1);
        } else {
            buffer.put_i32(length as i32);
        }
    }

    pub fn put_string(buffer: &mut BytesMut, flexible: bool, value: &str) {
        if flexible {
            put_unsigned_varint(buffer, value.len() as u32 + 1);
        } else {
            buffer.put_i16(value.len() as i16);
        }
        buffer.put_slice(value.as_bytes());
    }

    /// Length prefix of a nullable bytes field (records): -1/0 for null.
    pub fn put_bytes_length(buffer: &mut BytesMut, flexible: bool, length: Option<usize>) {
        match (flexible, length) {
            (true, None) => put_unsigned_varint(buffer, 0),
            (true, Some(length)) => put_unsigned_varint(buffer, length as u32 + 1),
            (false, None) => buffer.put_i32(-1),
            (false, Some(length)) => buffer.put_i32(length as i32),
        }
    }

    /// An empty tagged-field section.
    pub fn put_empty_tagged_fields(buffer: &mut BytesMut, flexible: bool) {
        if flexible {
            buffer.put_u8(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn frame_sizes_are_checked() {
        assert!(matches!(
            check_frame_size(200, 100),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            check_frame_size(-1, 100),
            Err(FrameError::TooSmall { .. })
        ));
        assert_eq!(check_frame_size(10, 100).unwrap(), 10);
    }

    #[test]
    fn builder_patches_size_and_keeps_chunks() {
        let mut builder = ResponseBuilder::new(ApiKey::Fetch, 12, 77);
        builder.buffer().put_i32(5);
        builder.push_chunk(Bytes::from_static(b"records"));
        builder.buffer().put_i16(1);
        let frame = builder.finish();
        assert_eq!(frame.chunks.len(), 3);
        assert_eq!(frame.chunks[1], Bytes::from_static(b"records"));
        let flat: Vec<u8> = frame.chunks.iter().flat_map(|c| c.to_vec()).collect();
        let size = i32::from_be_bytes([flat[0], flat[1], flat[2], flat[3]]) as usize;
        assert_eq!(size, flat.len() - 4);
        assert_eq!(&flat[4..8], &77i32.to_be_bytes());
        assert_eq!(flat[8], 0, "flexible response header has tagged fields");
    }

    #[test]
    fn api_versions_response_header_is_v0() {
        let response = ApiVersionsResponse::default();
        let frame = encode_response(ApiKey::ApiVersions, 3, 9, &response).unwrap();
        let mut flat = Bytes::from(frame.chunks.concat());
        let _size = bytes::Buf::get_i32(&mut flat);
        assert_eq!(bytes::Buf::get_i32(&mut flat), 9);
        let decoded = ApiVersionsResponse::decode(&mut flat, 3).unwrap();
        assert_eq!(decoded.error_code, 0);
    }
}
