//! `provisioner healthcheck`: one `GET /readyz` against the local service, for a container's
//! `HEALTHCHECK` (the image has no curl). Exit status 0 when it answers 200, 1 otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long the whole check may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The base URL at which a service listening on `listen` is reached from the same host: an
/// unspecified address (`0.0.0.0`, `[::]`) becomes the loopback address of its family. A
/// `name:port` is used as it is.
pub fn local_base_url(listen: &str) -> String {
    match listen.trim().parse::<SocketAddr>() {
        Ok(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                });
            }
            format!("http://{addr}")
        }
        Err(_) => format!("http://{}", listen.trim()),
    }
}

/// GETs `{base}/readyz` (no proxy, [`TIMEOUT`]); returns whether it answered 200 and the one
/// line to print.
pub async fn check(base: &str) -> (bool, String) {
    let url = format!("{}/readyz", base.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return (false, format!("unhealthy: {url}: building the client: {e}")),
    };
    match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => (true, format!("ok: {url}: 200")),
        Ok(r) => (false, format!("unhealthy: {url}: {}", r.status())),
        Err(e) => {
            let why = if e.is_timeout() {
                "no answer within 2 s".to_owned()
            } else {
                // The innermost cause says most ("Connection refused (os error 111)").
                let mut cause: &dyn std::error::Error = &e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                cause.to_string()
            };
            (false, format!("unhealthy: {url}: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local_base_url;

    #[test]
    fn unspecified_addresses_become_loopback() {
        for (listen, want) in [
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("[::]:8080", "http://[::1]:8080"),
            ("127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("10.1.2.3:8080", "http://10.1.2.3:8080"),
            ("localhost:8080", "http://localhost:8080"),
        ] {
            assert_eq!(local_base_url(listen), want);
        }
    }
}
