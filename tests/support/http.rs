//! Plain HTTP/1.1 GETs over TCP against the metrics and health listener, and reading
//! Prometheus text.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An address the kernel picks a free port on.
pub fn any_port() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// A response: status code, `Content-Type` and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET path` on `addr` with `Connection: close`; panics when the listener does not answer.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to the metrics listener at {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("a text response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// The value of the sample `name{labels...}` in Prometheus text whose labels include every
/// pair of `labels` (others may be present), or `None`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let has = |(key, want): &(&str, &str)| {
                series_labels
                    .split(',')
                    .any(|pair| pair == format!("{key}=\"{want}\""))
            };
            labels.iter().all(has).then(|| value.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# TYPE x counter\nx{queue=\"q\",outcome=\"handled\"} 3\nx{queue=\"q\",outcome=\"busy\"} 1\ny 2\n";
        assert_eq!(sample(text, "x", &[("outcome", "busy")]), Some(1.0));
        assert_eq!(
            sample(text, "x", &[("queue", "q"), ("outcome", "handled")]),
            Some(3.0)
        );
        assert_eq!(sample(text, "y", &[]), Some(2.0));
        assert_eq!(sample(text, "x", &[("outcome", "failed")]), None);
    }
}
