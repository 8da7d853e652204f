//! A plain HTTP/1.1 GET (a member's `/health` and `/metrics` share its client port), and
//! reading values out of Prometheus text.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one GET may take to answer.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(5);

/// GET over HTTP/1.1 on a fresh connection to `endpoint` (`host:port`); the whole answer
/// (status line, headers, body).
pub fn get(endpoint: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(endpoint)?;
    s.set_read_timeout(Some(ANSWER_WAIT_MAX))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The value of the sample `series` in Prometheus text: a metric name alone, or with its
/// labels exactly as rendered (`synod_startup_seconds{stage="serving"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                    a_total_bytes 4\nb{stage=\"x\"} 0.25\nb{stage=\"y\"} 1\n";
        assert_eq!(metric(text, "a_total"), Some(3.0));
        assert_eq!(metric(text, "a_total_bytes"), Some(4.0));
        assert_eq!(metric(text, "b{stage=\"x\"}"), Some(0.25));
        assert_eq!(metric(text, "b{stage=\"z\"}"), None);
        assert_eq!(metric(text, "b"), None);
    }
}
