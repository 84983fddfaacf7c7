//! RFC 4648 §6 base32, lowercase, without padding; decoding ignores case and ASCII
//! whitespace (a pasted address may be wrapped).

use super::error::AddrError;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `bytes` as base32 text.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The bytes `text` encodes. `offset` is where `text` starts in the whole address, so
/// errors point at the right character. Leftover bits must be zero (canonical form), so
/// every byte string has exactly one encoding.
pub(crate) fn decode(text: &str, offset: usize) -> Result<Vec<u8>, AddrError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut last = offset;
    for (i, c) in text.char_indices() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = match c.to_ascii_lowercase() {
            c @ 'a'..='z' => c as u32 - 'a' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => {
                return Err(AddrError::BadCharacter {
                    ch: c,
                    position: offset + i,
                });
            }
        };
        last = offset + i;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits >= 5 || acc != 0 {
        return Err(AddrError::BadEnding { position: last });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        // RFC 4648 §10, lowercased, padding removed.
        for (plain, coded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded, 0).unwrap(), plain.as_bytes());
            assert_eq!(decode(&coded.to_uppercase(), 0).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode("mzx w6\nyq", 0).unwrap(), b"foob");
    }

    #[test]
    fn refuses_non_canonical_and_foreign() {
        assert!(matches!(decode("mz", 0), Err(AddrError::BadEnding { .. })));
        assert!(matches!(decode("m", 0), Err(AddrError::BadEnding { .. })));
        assert_eq!(
            decode("mz1", 6),
            Err(AddrError::BadCharacter {
                ch: '1',
                position: 8
            })
        );
    }
}
