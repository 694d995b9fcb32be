//! `multipart/form-data` bodies (RFC 7578) for the platforms that take uploads that way
//! (Telegram's `send<Kind>`, Discord's Create Message with `files[n]`). Pure: bytes in, bytes out.

/// One part of a form.
pub struct Part<'a> {
    pub name: &'a str,
    /// Set for a file part.
    pub file_name: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub bytes: &'a [u8],
}

impl<'a> Part<'a> {
    /// A text field.
    pub fn text(name: &'a str, value: &'a str) -> Part<'a> {
        Part { name, file_name: None, content_type: None, bytes: value.as_bytes() }
    }

    /// A file.
    pub fn file(name: &'a str, file_name: &'a str, bytes: &'a [u8]) -> Part<'a> {
        Part { name, file_name: Some(file_name), content_type: Some("application/octet-stream"), bytes }
    }
}

/// The body and its content type (with the boundary).
pub fn encode(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("clawline-{}", uuid::Uuid::new_v4().simple());
    // Quotes, backslashes and line breaks cannot appear inside the quoted names.
    let clean = |s: &str| s.replace(['"', '\r', '\n', '\\'], "_");
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.bytes.len() + 160).sum());
    for p in parts {
        let mut head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", clean(p.name));
        if let Some(f) = p.file_name {
            head.push_str(&format!("; filename=\"{}\"", clean(f)));
        }
        head.push_str("\r\n");
        if let Some(ct) = p.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_named_and_the_body_ends_with_the_boundary() {
        let (ct, body) = encode(&[Part::text("chat_id", "7"), Part::file("photo", "a\"b.png", b"\x89PNG")]);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n7\r\n"))
        );
        assert!(
            text.contains("name=\"photo\"; filename=\"a_b.png\"\r\nContent-Type: application/octet-stream"),
            "{text}"
        );
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    }
}
