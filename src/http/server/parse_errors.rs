//! hyper answers a request it cannot parse (bad header bytes, an obs-fold line, conflicting
//! `Content-Length`, headers past its buffer) by itself, with an empty body, before any of our
//! code sees a request. Those answers pass through the connection's writer, so they are
//! recognised there and given the docs/api.md §4 JSON body.

use crate::error::{ApiError, Reason};

/// hyper's automatic answers: exactly a status line and headers, `content-length: 0`, and
/// one of the statuses its parser produces. Responses of ours never match: every error we send
/// has a JSON body.
pub fn json_replacement(written: &[u8]) -> Option<Vec<u8>> {
    // Every response passes through here: the status digits after `HTTP/1.x ` rule out all
    // but hyper's own answers at once.
    if !matches!(written.get(9..12), Some(b"400" | b"414" | b"431")) {
        return None;
    }
    let status_line_end = find(written, b"\r\n")?;
    let status_line = std::str::from_utf8(&written[..status_line_end]).ok()?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let (status, reason) = match rest.get(..3)? {
        "400" => (
            "400 Bad Request",
            ApiError::bad_request(
                Reason::MalformedRequest,
                "The request line or headers could not be parsed (bytes not allowed in a header, \
                 a folded header line, or conflicting Content-Length); the connection is closed.",
            ),
        ),
        "414" => (
            "414 URI Too Long",
            ApiError::bad_request(
                Reason::UriTooLong,
                "The request target is too long; the connection is closed.",
            ),
        ),
        "431" => (
            "431 Request Header Fields Too Large",
            ApiError::bad_request(
                Reason::HeadersTooLarge,
                "The request headers are too large; the connection is closed.",
            ),
        ),
        _ => return None,
    };
    if !written.ends_with(b"\r\n\r\n") || written.len() < status_line_end + 4 {
        return None;
    }
    let headers = &written[status_line_end + 2..written.len() - 2];
    let mut empty_body = false;
    let mut kept = Vec::new();
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.eq_ignore_ascii_case(b"content-length: 0") {
            empty_body = true;
        } else if starts_with_ignore_case(line, b"date:") {
            kept.push(line);
        } else if line.eq_ignore_ascii_case(b"connection: close") {
            // Ours says so too.
        } else {
            // Anything else means this is not hyper's bare answer.
            return None;
        }
    }
    if !empty_body {
        return None;
    }
    let body = reason.body(None);
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncache-control: no-store\r\n");
    out.extend_from_slice(b"connection: close\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in kept {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(response: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(response.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_bare_answers_get_json_bodies() {
        for (status, reason) in [
            ("400 Bad Request", "malformed_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
        ] {
            let bare = format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: Fri, 27 Nov 2026 06:00:00 GMT\r\n\r\n"
            );
            let replaced = json_replacement(bare.as_bytes()).expect("replaced");
            let (head, body) = parse(&replaced);
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{head}"
            );
            assert!(head.contains("content-type: application/json"));
            assert!(head.contains("connection: close"));
            assert!(head.contains("date: Fri, 27 Nov 2026 06:00:00 GMT"));
            assert_eq!(body["error"]["code"], "BAD_REQUEST");
            assert_eq!(body["error"]["details"]["reason"], reason);
        }
    }

    #[test]
    fn our_own_responses_pass_untouched() {
        for response in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"error\":{}}"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: 1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nextra",
            b"partial body bytes",
            b"",
        ] {
            assert!(json_replacement(response).is_none(), "{response:?}");
        }
    }
}
