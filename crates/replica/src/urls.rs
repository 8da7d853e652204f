//! URLs as etcd's flags and member table hold them (`http://host:port`), and the stable hash
//! member and cluster ids derive from.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

fn err<T>(msg: impl Into<String>) -> Result<T, FlagError> {
    Err(FlagError(msg.into()))
}

/// An `http://host:port` URL, as etcd's flags take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(flag: &str, s: &str) -> Result<Url, FlagError> {
        let s = s.trim();
        let rest = match s.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https" | "unixs" | "unix", _)) => {
                return err(format!(
                    "{flag}: {s:?}: only http:// URLs are supported (TLS and unix sockets are not \
                     built yet)"
                ))
            }
            Some((scheme, _)) => return err(format!("{flag}: {s:?}: unknown scheme {scheme:?}")),
            None => return err(format!("{flag}: {s:?}: expected http://host:port")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return err(format!("{flag}: {s:?}: a URL here must not have a path"));
        }
        let Some((host, port)) = rest.rsplit_once(':') else {
            return err(format!("{flag}: {s:?}: the port is missing"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return err(format!("{flag}: {s:?}: the host is missing"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| FlagError(format!("{flag}: {s:?}: bad port {port:?}")))?;
        Ok(Url {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port`, for dialing.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority())
    }
}

/// A comma-separated list of URLs.
pub fn parse_urls(flag: &str, s: &str) -> Result<Vec<Url>, FlagError> {
    let urls = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| Url::parse(flag, p))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return err(format!("{flag}: no URL given"));
    }
    Ok(urls)
}

/// FNV-1a, 64-bit: stable across Rust versions and platforms (unlike `DefaultHasher`), which
/// ids written to disk and compared between processes need.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
