//! Bounded XML parsing for descriptions and SOAP envelopes, on top of `roxmltree`.
//!
//! Limits: at most [`MAX_XML_LEN`] bytes of UTF-8, at most [`MAX_XML_NODES`] nodes, and no
//! DTD (so no entity expansion at all — "billion laughs" is refused before it starts).
//! Element names are compared by local name, so any namespace prefix a gateway picks
//! (`s:`, `SOAP-ENV:`, `u:`, none) works.

/// Largest XML document accepted.
pub const MAX_XML_LEN: usize = 64 * 1024;
/// Most nodes (elements, text, attributes' owners) accepted in one document.
pub const MAX_XML_NODES: u32 = 4096;

/// Why an XML document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Longer than [`MAX_XML_LEN`].
    #[error("the gateway's XML is larger than {MAX_XML_LEN} bytes")]
    TooLarge,
    /// Not UTF-8.
    #[error("the gateway's XML is not UTF-8")]
    NotUtf8,
    /// Not well-formed, has a DTD, or has too many nodes.
    #[error("the gateway sent malformed XML: {0}")]
    Malformed(String),
}

/// Parses `bytes` as a bounded XML document.
pub fn parse_xml(bytes: &[u8]) -> Result<roxmltree::Document<'_>, XmlError> {
    if bytes.len() > MAX_XML_LEN {
        return Err(XmlError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)?;
    let opt = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_XML_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, opt)
        .map_err(|e| XmlError::Malformed(e.to_string().chars().take(120).collect()))
}

/// Escapes text for an XML element body.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(parse_xml(b"<a><b>x</b></a>").is_ok());
        assert_eq!(
            parse_xml(&vec![b' '; MAX_XML_LEN + 1]).err(),
            Some(XmlError::TooLarge)
        );
        assert!(parse_xml("<a>".repeat(5000).as_bytes()).is_err());
        assert!(parse_xml(b"<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>").is_err());
        assert_eq!(escape("a<&>\"'"), "a&lt;&amp;&gt;&quot;&apos;");
    }
}
