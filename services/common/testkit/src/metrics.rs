//! Reading a service's Prometheus endpoint in tests: scrape `/metrics` and look up one sample by
//! name and labels.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A local address for a service's metrics endpoint (the service binds it): a port below the
/// ephemeral range ([`crate::free_port`]), which no outgoing connection can take meanwhile.
pub fn free_local_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], crate::free_port()?)))
}

/// The text exposition served on `http://{addr}/metrics`.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no HTTP body"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "metrics: {head}");
    Ok(body.to_owned())
}

/// Scrapes `http://{addr}/metrics` until `check` finds what it waits for (up to 10 s), and
/// returns it; fails the test with the last text scraped otherwise.
pub async fn wait_for<T>(addr: SocketAddr, what: &str, check: impl Fn(&str) -> Option<T>) -> T {
    let mut last = String::new();
    for _ in 0..400 {
        if let Ok(text) = scrape(addr).await {
            if let Some(found) = check(&text) {
                return found;
            }
            last = text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("metrics never showed {what}:\n{last}");
}

/// The value of the sample `name` whose labels include every `(label, value)` of `labels`
/// (other labels may differ: the first match wins).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let matches = series_name == name
            && labels
                .iter()
                .all(|(label, wanted)| series_labels.split(',').any(|pair| pair == format!("{label}=\"{wanted}\"")));
        if matches { value.parse().ok() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# TYPE dw_x counter\n\
                    dw_x_total{provider=\"sms\",reason=\"http_5xx\"} 2\n\
                    dw_x_total{provider=\"sms\",reason=\"timeout\"} 1\n\
                    dw_y 0.5\n# EOF\n";
        assert_eq!(sample(text, "dw_x_total", &[("reason", "timeout")]), Some(1.0));
        assert_eq!(sample(text, "dw_x_total", &[("provider", "sms"), ("reason", "http_5xx")]), Some(2.0));
        assert_eq!(sample(text, "dw_x_total", &[("reason", "connect")]), None);
        assert_eq!(sample(text, "dw_y", &[]), Some(0.5));
        assert_eq!(sample(text, "dw_x", &[]), None);
    }
}
