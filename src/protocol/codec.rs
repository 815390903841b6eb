//! Kafka's record codecs, decompression only, as streams (`attributes & 0x07`): 1 gzip, 2
//! snappy (librdkafka's single raw block, or the Java client's xerial framing), 3 lz4 (frame
//! format), 4 zstd. Pure Rust decoders. Used where the broker must look inside a client's
//! compressed batch (ListOffsets by timestamp), never on the produce path: batches are stored
//! compressed, as received.
//!
//! Memory: callers read as a stream and skip what they do not need; a snappy block is the only
//! thing held whole, and its claimed size is checked against what snappy can expand to before
//! its buffer is allocated.

use std::io::{self, BufReader, Read};

pub const CODEC_NONE: i16 = 0;
pub const CODEC_GZIP: i16 = 1;
pub const CODEC_SNAPPY: i16 = 2;
pub const CODEC_LZ4: i16 = 3;
pub const CODEC_ZSTD: i16 = 4;

/// A reader of the decompressed records section of a batch.
pub fn decompressor(codec: i16, body: &[u8]) -> io::Result<Box<dyn Read + '_>> {
    Ok(match codec {
        CODEC_NONE => Box::new(body),
        CODEC_GZIP => Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(body))),
        CODEC_SNAPPY => Box::new(SnappyReader::new(body)),
        CODEC_LZ4 => Box::new(BufReader::new(lz4_flex::frame::FrameDecoder::new(body))),
        CODEC_ZSTD => Box::new(BufReader::new(
            ruzstd::decoding::StreamingDecoder::new(body)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?,
        )),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown compression codec {other}"),
            ))
        }
    })
}

/// Java clients frame snappy the xerial way: this magic, a 16-byte header, then blocks of
/// [u32 length][raw snappy block]. librdkafka writes one raw block.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
/// Snappy cannot expand a block more than ~22x; a block claiming more is refused before its
/// buffer is allocated.
const SNAPPY_EXPANSION_MAX: usize = 32;

/// Kafka's snappy payload, decoded one block at a time.
struct SnappyReader<'a> {
    rest: &'a [u8],
    xerial: bool,
    block: Vec<u8>,
    at: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(body: &'a [u8]) -> SnappyReader<'a> {
        let xerial = body.starts_with(XERIAL_MAGIC);
        let rest = if xerial {
            body.get(XERIAL_HEADER_BYTES..).unwrap_or(&[])
        } else {
            body
        };
        SnappyReader {
            rest,
            xerial,
            block: Vec::new(),
            at: 0,
        }
    }

    /// Decodes the next block into `block`; false at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let rest: &'a [u8] = self.rest;
        if rest.is_empty() {
            return Ok(false);
        }
        let compressed = if self.xerial {
            let (length, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("snappy block length truncated"))?;
            let length = u32::from_be_bytes(*length) as usize;
            let block = tail
                .get(..length)
                .ok_or_else(|| invalid("snappy block truncated"))?;
            self.rest = &tail[length..];
            block
        } else {
            self.rest = &[];
            rest
        };
        let length = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if length > compressed.len().saturating_mul(SNAPPY_EXPANSION_MAX) + 64 {
            return Err(invalid("snappy block claims more than it can hold"));
        }
        self.block.resize(length, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let count = out.len().min(self.block.len() - self.at);
        out[..count].copy_from_slice(&self.block[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}
