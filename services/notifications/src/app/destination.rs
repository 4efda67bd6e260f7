//! Resolves an outbound destination's host and checks where it leads by the rules of
//! [`crate::domain::destination`].

use crate::domain::destination::Destination;

/// Admits `url` when it is http(s) and its host is allow-listed or resolves to public addresses only.
pub async fn check_destination(url: &str, allowed_hosts: &[String]) -> Result<(), String> {
    let destination = Destination::parse(url)?;
    if destination.is_allow_listed(allowed_hosts) {
        return Ok(());
    }
    let addresses = tokio::net::lookup_host((destination.host(), destination.port()))
        .await
        .map_err(|_| "host does not resolve".to_owned())?;
    destination.check_addresses(addresses.map(|address| address.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_destinations_need_the_allow_list() {
        assert!(check_destination("http://127.0.0.1:9000/hook", &[]).await.is_err());
        assert!(check_destination("http://10.1.2.3/hook", &[]).await.is_err());
        assert!(check_destination("http://[::1]/hook", &[]).await.is_err());
        assert!(check_destination("http://127.0.0.1:9000/hook", &["127.0.0.1".to_owned()]).await.is_ok());
        assert!(check_destination("ftp://example.com/x", &[]).await.is_err());
    }
}
