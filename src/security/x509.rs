//! Just enough DER to read a certificate's subject and print it as RFC 2253 does (what Kafka's
//! DEFAULT `ssl.principal.mapping.rules` gives as the principal name: `CN=alice,OU=eng,O=Acme`,
//! the last RDN first). The certificate was verified by rustls before this reads it; still,
//! every length is checked and a malformed subject is None, never a panic.

/// (tag, contents, rest) of the DER element at the start of `input`.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let mut length = 0usize;
        for &byte in &rest[..count] {
            length = (length << 8) | usize::from(byte);
        }
        rest = &rest[count..];
        length
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of an X.509 certificate, RFC 2253 style.
pub fn subject_rfc2253(certificate: &[u8]) -> Option<String> {
    let (tag, certificate, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (tag, subject, _) = element(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    name_rfc2253(subject)
}

/// A Name's RDNs (SET OF AttributeTypeAndValue, in encoding order), printed last first.
fn name_rfc2253(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = element(name)?;
        if tag != SET {
            return None;
        }
        name = rest;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (tag, attribute, rest) = element(set)?;
            if tag != SEQUENCE {
                return None;
            }
            set = rest;
            let (tag, oid, value) = element(attribute)?;
            if tag != OID {
                return None;
            }
            let (value_tag, text, _) = element(value)?;
            let key = attribute_name(oid);
            let value = match (key.as_deref(), string_value(value_tag, text)) {
                (Some(_), Some(text)) => escape(&text),
                // RFC 2253: an unknown type or value is the dotted OID and the value's DER in hex.
                _ => format!("#{}", hex(value)),
            };
            attributes.push(format!("{}={value}", key.unwrap_or_else(|| dotted(oid))));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> Option<String> {
    let name = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    };
    Some(name.to_string())
}

fn string_value(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (as Latin-1), VisibleString
        0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8(bytes.to_vec()).ok(),
        0x14 => Some(bytes.iter().map(|&byte| char::from(byte)).collect()),
        // BMPString: UTF-16BE
        0x1e if bytes.len() % 2 == 0 => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 §2.4 escaping.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (position, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (position == 0 && (character == '#' || character == ' '))
            || (position == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut value = 0u64;
    for (position, &byte) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if parts.is_empty() && position < oid.len() {
                let first = (value / 40).min(2);
                parts.push(first);
                parts.push(value - first * 40);
            } else {
                parts.push(value);
            }
            value = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of Name = C=US, O=Acme, CN=alice, built by hand.
    fn name() -> Vec<u8> {
        let rdn = |oid: &[u8], tag: u8, text: &str| {
            let mut attribute = vec![OID, oid.len() as u8];
            attribute.extend_from_slice(oid);
            attribute.extend_from_slice(&[tag, text.len() as u8]);
            attribute.extend_from_slice(text.as_bytes());
            let mut sequence = vec![SEQUENCE, attribute.len() as u8];
            sequence.extend(attribute);
            let mut set = vec![SET, sequence.len() as u8];
            set.extend(sequence);
            set
        };
        let mut body = rdn(&[0x55, 4, 6], 0x13, "US");
        body.extend(rdn(&[0x55, 4, 10], 0x0c, "Acme, Inc"));
        body.extend(rdn(&[0x55, 4, 3], 0x0c, "alice"));
        body
    }

    #[test]
    fn subject_prints_last_rdn_first_with_escapes() {
        assert_eq!(
            name_rfc2253(&name()).unwrap(),
            "CN=alice,O=Acme\\, Inc,C=US"
        );
    }

    #[test]
    fn truncated_input_is_none() {
        let name = name();
        for cut in 1..name.len() {
            // Never panics; a cut inside an element is refused.
            let _ = name_rfc2253(&name[..cut]);
        }
        assert!(element(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
