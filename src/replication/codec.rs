//! Raft messages on the wire between nodes, in Sluice's own encoding (little-endian, length-
//! prefixed), never protobuf: a peer's bytes are only ever read by this decoder, which checks
//! every length against what is left and refuses unknown enum values, so a malformed frame is an
//! error for that connection, never a panic. Entry payloads are sliced out of the frame's
//! `Bytes` (no copy).
//!
//! Message: `msg_type u8`, `to u64`, `from u64`, `term u64`, `log_term u64`, `index u64`,
//! `commit u64`, `commit_term u64`, `reject u8`, `reject_hint u64`, `request_snapshot u64`,
//! `priority i64`, `context bytes`, `entry count u32` + entries, `has_snapshot u8` [+ snapshot].
//! Entry: `entry_type u8`, `term u64`, `index u64`, `context bytes`, `data bytes`.
//! Snapshot: `index u64`, `term u64`, conf state (`voters`, `learners`, `voters_outgoing`,
//! `learners_next` as u32 count + u64s, `auto_leave u8`), `data bytes`.
//! `bytes` is a u32 length and that many bytes.

use bytes::{Buf, Bytes};
use protobuf::ProtobufEnum;
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("raft message truncated")]
    Truncated,
    #[error("unknown raft {0} value {1}")]
    UnknownEnum(&'static str, u8),
    #[error("raft message claims {0} items, more than its bytes can hold")]
    TooMany(u32),
}

pub fn encode_messages(buffer: &mut Vec<u8>, messages: &[Message]) {
    buffer.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for message in messages {
        encode_message(buffer, message);
    }
}

pub fn decode_messages(bytes: &mut Bytes) -> Result<Vec<Message>, CodecError> {
    let count = take_u32(bytes)?;
    // A message takes at least 80 bytes: a count beyond that is corrupt, not a reason to
    // reserve memory.
    if count as usize > bytes.remaining() / 80 + 1 {
        return Err(CodecError::TooMany(count));
    }
    (0..count).map(|_| decode_message(bytes)).collect()
}

fn encode_message(buffer: &mut Vec<u8>, message: &Message) {
    buffer.push(message.msg_type.value() as u8);
    for value in [
        message.to,
        message.from,
        message.term,
        message.log_term,
        message.index,
        message.commit,
        message.commit_term,
    ] {
        buffer.extend_from_slice(&value.to_le_bytes());
    }
    buffer.push(u8::from(message.reject));
    buffer.extend_from_slice(&message.reject_hint.to_le_bytes());
    buffer.extend_from_slice(&message.request_snapshot.to_le_bytes());
    buffer.extend_from_slice(&message.priority.to_le_bytes());
    put_bytes(buffer, &message.context);
    buffer.extend_from_slice(&(message.entries.len() as u32).to_le_bytes());
    for entry in message.entries.iter() {
        buffer.push(entry.entry_type.value() as u8);
        buffer.extend_from_slice(&entry.term.to_le_bytes());
        buffer.extend_from_slice(&entry.index.to_le_bytes());
        put_bytes(buffer, &entry.context);
        put_bytes(buffer, &entry.data);
    }
    match message.snapshot.as_ref() {
        Some(snapshot) => {
            buffer.push(1);
            let metadata = snapshot.get_metadata();
            buffer.extend_from_slice(&metadata.index.to_le_bytes());
            buffer.extend_from_slice(&metadata.term.to_le_bytes());
            let conf = metadata.get_conf_state();
            for list in [
                &conf.voters,
                &conf.learners,
                &conf.voters_outgoing,
                &conf.learners_next,
            ] {
                buffer.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for id in list {
                    buffer.extend_from_slice(&id.to_le_bytes());
                }
            }
            buffer.push(u8::from(conf.auto_leave));
            put_bytes(buffer, &snapshot.data);
        }
        None => buffer.push(0),
    }
}

fn decode_message(bytes: &mut Bytes) -> Result<Message, CodecError> {
    let mut message = Message::new();
    let kind = take_u8(bytes)?;
    message.msg_type = MessageType::from_i32(i32::from(kind))
        .ok_or(CodecError::UnknownEnum("message type", kind))?;
    message.to = take_u64(bytes)?;
    message.from = take_u64(bytes)?;
    message.term = take_u64(bytes)?;
    message.log_term = take_u64(bytes)?;
    message.index = take_u64(bytes)?;
    message.commit = take_u64(bytes)?;
    message.commit_term = take_u64(bytes)?;
    message.reject = take_u8(bytes)? != 0;
    message.reject_hint = take_u64(bytes)?;
    message.request_snapshot = take_u64(bytes)?;
    message.priority = take_u64(bytes)? as i64;
    message.context = take_bytes(bytes)?;
    let entries = take_u32(bytes)?;
    if entries as usize > bytes.remaining() / 25 + 1 {
        return Err(CodecError::TooMany(entries));
    }
    for _ in 0..entries {
        let mut entry = Entry::new();
        let kind = take_u8(bytes)?;
        entry.entry_type = EntryType::from_i32(i32::from(kind))
            .ok_or(CodecError::UnknownEnum("entry type", kind))?;
        entry.term = take_u64(bytes)?;
        entry.index = take_u64(bytes)?;
        entry.context = take_bytes(bytes)?;
        entry.data = take_bytes(bytes)?;
        message.entries.push(entry);
    }
    if take_u8(bytes)? == 1 {
        let mut snapshot = Snapshot::new();
        let metadata = snapshot.mut_metadata();
        metadata.index = take_u64(bytes)?;
        metadata.term = take_u64(bytes)?;
        let mut conf = ConfState::new();
        for list in 0..4 {
            let count = take_u32(bytes)?;
            if count as usize > bytes.remaining() / 8 {
                return Err(CodecError::TooMany(count));
            }
            let ids = (0..count)
                .map(|_| take_u64(bytes))
                .collect::<Result<Vec<u64>, _>>()?;
            match list {
                0 => conf.voters = ids,
                1 => conf.learners = ids,
                2 => conf.voters_outgoing = ids,
                _ => conf.learners_next = ids,
            }
        }
        conf.auto_leave = take_u8(bytes)? != 0;
        metadata.set_conf_state(conf);
        snapshot.data = take_bytes(bytes)?;
        message.set_snapshot(snapshot);
    }
    Ok(message)
}

fn put_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(bytes);
}

fn take_u8(bytes: &mut Bytes) -> Result<u8, CodecError> {
    if bytes.remaining() < 1 {
        return Err(CodecError::Truncated);
    }
    Ok(bytes.get_u8())
}

fn take_u32(bytes: &mut Bytes) -> Result<u32, CodecError> {
    if bytes.remaining() < 4 {
        return Err(CodecError::Truncated);
    }
    Ok(bytes.get_u32_le())
}

fn take_u64(bytes: &mut Bytes) -> Result<u64, CodecError> {
    if bytes.remaining() < 8 {
        return Err(CodecError::Truncated);
    }
    Ok(bytes.get_u64_le())
}

fn take_bytes(bytes: &mut Bytes) -> Result<Bytes, CodecError> {
    let length = take_u32(bytes)? as usize;
    if bytes.remaining() < length {
        return Err(CodecError::Truncated);
    }
    Ok(bytes.split_to(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Message> {
        let mut append = Message::new();
        append.msg_type = MessageType::MsgAppend;
        append.to = 2;
        append.from = 1;
        append.term = 7;
        append.log_term = 6;
        append.index = 41;
        append.commit = 40;
        append.commit_term = 6;
        append.priority = -3;
        append.context = Bytes::from_static(b"ctx");
        for index in 42..44 {
            let mut entry = Entry::new();
            entry.term = 7;
            entry.index = index;
            entry.data = Bytes::from(vec![index as u8; 100]);
            append.entries.push(entry);
        }
        let mut vote = Message::new();
        vote.msg_type = MessageType::MsgRequestPreVoteResponse;
        vote.reject = true;
        vote.reject_hint = 9;
        let mut snapshot = Message::new();
        snapshot.msg_type = MessageType::MsgSnapshot;
        let mut image = Snapshot::new();
        image.mut_metadata().index = 100;
        image.mut_metadata().term = 5;
        image
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![4])));
        image.data = Bytes::from_static(b"state");
        snapshot.set_snapshot(image);
        vec![append, vote, snapshot]
    }

    #[test]
    fn messages_round_trip() {
        let messages = sample();
        let mut buffer = Vec::new();
        encode_messages(&mut buffer, &messages);
        let mut bytes = Bytes::from(buffer);
        let decoded = decode_messages(&mut bytes).expect("decode");
        assert_eq!(decoded, messages);
        assert!(bytes.is_empty());
    }

    #[test]
    fn every_truncation_and_bad_enum_is_an_error_not_a_panic() {
        let mut buffer = Vec::new();
        encode_messages(&mut buffer, &sample());
        for cut in 0..buffer.len() {
            let mut bytes = Bytes::copy_from_slice(&buffer[..cut]);
            assert!(decode_messages(&mut bytes).is_err(), "cut at {cut}");
        }
        let mut bad = buffer.clone();
        bad[4] = 200; // first message type
        assert_eq!(
            decode_messages(&mut Bytes::from(bad)),
            Err(CodecError::UnknownEnum("message type", 200))
        );
        let mut huge = vec![0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&buffer[4..]);
        assert!(matches!(
            decode_messages(&mut Bytes::from(huge)),
            Err(CodecError::TooMany(_))
        ));
    }
}
