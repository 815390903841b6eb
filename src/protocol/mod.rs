//! Kafka wire protocol glue: record batch headers, error codes, the supported API table and the
//! frame/response encoding helpers. No I/O happens here.
//!
//! Request and response structs come from the `kafka-protocol` crate, decoded from the frame's
//! `Bytes` so that `records` fields are slices of the socket buffer. That crate's record decoder
//! is never run on client data; batches are parsed by `batch.rs`. The Fetch response is
//! encoded by hand (`fetch_response.rs`) so record bytes go out as borrowed chunks.
//! `codec.rs` decompresses client batches where the broker must look inside one
//! (`timestamp_search.rs`, ListOffsets by timestamp), never on the produce path.

pub mod batch;
pub mod codec;
pub mod error;
pub mod fetch_response;
pub mod frame;
pub mod produce_request;
pub mod records;
pub mod timestamp_search;
pub mod versions;
