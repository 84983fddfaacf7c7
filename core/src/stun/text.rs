//! UTF-8 text attributes: USERNAME, REALM, NONCE, SOFTWARE (RFC 8489 §14.3, §14.9,
//! §14.10, §14.14).

use super::attr::{AttrType, Attribute};
use super::error::StunError;
use super::header::HeaderContext;

macro_rules! text_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name<'a>(&'a str);

        impl<'a> $name<'a> {
            /// The longest value accepted, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Wraps `text`, refusing a value longer than the attribute allows.
            pub fn new(text: &'a str) -> Result<Self, StunError> {
                if text.len() > Self::MAX_LEN {
                    return Err(StunError::ValueTooLong {
                        typ: AttrType::$typ,
                        len: text.len(),
                        max: Self::MAX_LEN,
                    });
                }
                Ok($name(text))
            }

            /// The text.
            pub fn as_str(&self) -> &'a str {
                self.0
            }
        }

        impl<'a> Attribute<'a> for $name<'a> {
            const TYPE: AttrType = AttrType::$typ;

            fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
                let text = std::str::from_utf8(value).map_err(|_| StunError::BadAttribute {
                    typ: Self::TYPE,
                    reason: "not valid UTF-8",
                })?;
                Self::new(text)
            }

            fn encoded_len(&self) -> usize {
                self.0.len()
            }

            fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
                out.copy_from_slice(self.0.as_bytes());
            }
        }
    };
}

text_attribute!(
    /// USERNAME: who is authenticating (RFC 8489 §14.3; RFC 5389's limit of 512 bytes).
    Username, USERNAME, 512);
text_attribute!(
    /// REALM: the long-term credential realm (RFC 8489 §14.9).
    Realm, REALM, 763);
text_attribute!(
    /// NONCE: the server's nonce for long-term credentials (RFC 8489 §14.10).
    Nonce, NONCE, 763);
text_attribute!(
    /// SOFTWARE: the agent's name and version, for diagnostics (RFC 8489 §14.14).
    Software, SOFTWARE, 763);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::header::{MAGIC_COOKIE, TransactionId};

    #[test]
    fn limits_and_utf8_are_enforced() {
        let ctx = HeaderContext {
            cookie: MAGIC_COOKIE,
            transaction_id: TransactionId::new([0; 12]),
        };
        assert!(Username::new(&"a".repeat(512)).is_ok());
        assert!(Username::new(&"a".repeat(513)).is_err());
        assert!(Realm::decode(&[0xff, 0xfe], &ctx).is_err());
        assert_eq!(Nonce::decode(b"abc", &ctx).unwrap().as_str(), "abc");
    }
}
