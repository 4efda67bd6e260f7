//! Given/when/then tests of the destination policy: a test per range family, then the URL rules.

use super::*;

/// When `address` is judged: the range it was refused for, if it was.
fn when_judged(address: &str) -> Option<Range> {
    let address: IpAddr = address.parse().unwrap();
    check_address(address).err().map(|refusal| refusal.range)
}

/// Given addresses of one range family, each is refused as that range.
fn then_refused_as(range: Range, addresses: &[&str]) {
    for address in addresses {
        assert_eq!(when_judged(address), Some(range), "{address}");
    }
}

fn then_public(addresses: &[&str]) {
    for address in addresses {
        assert_eq!(when_judged(address), None, "{address}");
    }
}

#[test]
fn this_network_0_0_0_0_slash_8_is_refused() {
    then_refused_as(Range::ThisNetwork, &["0.0.0.0", "0.1.2.3", "0.255.255.255"]);
}

#[test]
fn private_ranges_are_refused_and_their_neighbours_are_public() {
    then_refused_as(
        Range::Private,
        &["10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.0.1", "192.168.255.255"],
    );
    then_public(&["11.0.0.1", "172.15.255.255", "172.32.0.1", "192.167.255.255", "192.169.0.1"]);
}

#[test]
fn carrier_grade_nat_100_64_slash_10_is_refused() {
    then_refused_as(Range::SharedAddressSpace, &["100.64.0.1", "100.100.100.100", "100.127.255.254"]);
    then_public(&["100.63.255.255", "100.128.0.1"]);
}

#[test]
fn loopback_is_refused_in_ipv4_and_ipv6() {
    then_refused_as(Range::Loopback, &["127.0.0.1", "127.255.255.254", "::1"]);
}

#[test]
fn link_local_is_refused_in_ipv4_and_ipv6_metadata_service_included() {
    then_refused_as(Range::LinkLocal, &["169.254.169.254", "169.254.0.1", "fe80::1", "febf:ffff::1"]);
    then_public(&["169.253.255.255", "169.255.0.1", "fec0::1"]);
}

#[test]
fn ietf_protocol_assignments_192_0_0_slash_24_are_refused() {
    then_refused_as(Range::IetfProtocolAssignments, &["192.0.0.1", "192.0.0.170"]);
    then_public(&["192.0.1.1"]);
}

#[test]
fn documentation_ranges_are_refused_in_ipv4_and_ipv6() {
    then_refused_as(
        Range::Documentation,
        &["192.0.2.1", "198.51.100.7", "203.0.113.255", "2001:db8::1", "2001:db8:ffff::1"],
    );
    then_public(&["192.0.3.1", "203.0.114.1", "2001:db9::1"]);
}

#[test]
fn benchmarking_198_18_slash_15_is_refused() {
    then_refused_as(Range::Benchmarking, &["198.18.0.1", "198.19.255.255"]);
    then_public(&["198.17.255.255", "198.20.0.1"]);
}

#[test]
fn multicast_is_refused_in_ipv4_and_ipv6() {
    then_refused_as(Range::Multicast, &["224.0.0.1", "239.255.255.255", "ff02::1", "ff0e::1"]);
}

#[test]
fn reserved_240_slash_4_and_broadcast_are_refused() {
    then_refused_as(Range::Reserved, &["240.0.0.1", "255.255.255.254"]);
    then_refused_as(Range::Broadcast, &["255.255.255.255"]);
    then_public(&["223.255.255.255"]);
}

#[test]
fn the_unspecified_ipv6_address_is_refused() {
    then_refused_as(Range::Unspecified, &["::"]);
}

#[test]
fn unique_local_fc00_slash_7_is_refused() {
    then_refused_as(Range::UniqueLocal, &["fc00::1", "fd12:3456::1", "fdff:ffff::1"]);
}

#[test]
fn an_ipv4_mapped_address_is_judged_by_the_ipv4_it_carries() {
    let refused = check_address("::ffff:169.254.169.254".parse().unwrap()).unwrap_err();
    assert_eq!(refused.embedded, Some((Embedding::Ipv4Mapped, Ipv4Addr::new(169, 254, 169, 254))));
    assert_eq!(refused.range, Range::LinkLocal);
    then_refused_as(Range::Private, &["::ffff:10.0.0.1", "::ffff:a00:1"]);
    then_refused_as(Range::Loopback, &["::ffff:127.0.0.1"]);
    then_refused_as(Range::ThisNetwork, &["::ffff:0.0.0.0"]);
    then_public(&["::ffff:8.8.8.8"]);
}

#[test]
fn an_ipv4_compatible_address_is_judged_by_the_ipv4_it_carries() {
    then_refused_as(Range::Private, &["::10.0.0.1", "::192.168.1.1"]);
    then_refused_as(Range::LinkLocal, &["::169.254.169.254"]);
    then_refused_as(Range::ThisNetwork, &["::0.0.0.2"]);
    then_public(&["::8.8.8.8"]);
}

#[test]
fn a_nat64_address_is_judged_by_the_ipv4_it_carries() {
    // 64:ff9b::/96, the IPv4 in the last 32 bits.
    then_refused_as(Range::LinkLocal, &["64:ff9b::a9fe:a9fe", "64:ff9b::169.254.169.254"]);
    then_refused_as(Range::Loopback, &["64:ff9b::127.0.0.1"]);
    then_public(&["64:ff9b::8.8.8.8"]);
    // 64:ff9b:1::/48, local use, read the same way.
    then_refused_as(Range::Private, &["64:ff9b:1::10.0.0.1", "64:ff9b:1:ffff::a00:1"]);
    then_public(&["64:ff9b:1::8.8.8.8"]);
}

#[test]
fn a_6to4_address_is_judged_by_the_ipv4_it_carries() {
    let refused = check_address("2002:a00:1::1".parse().unwrap()).unwrap_err();
    assert_eq!(refused.embedded, Some((Embedding::SixToFour, Ipv4Addr::new(10, 0, 0, 1))));
    then_refused_as(Range::Loopback, &["2002:7f00:1::"]);
    then_refused_as(Range::LinkLocal, &["2002:a9fe:a9fe::1"]);
    then_public(&["2002:808:808::1"]);
}

#[test]
fn public_addresses_are_accepted() {
    then_public(&["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"]);
}

#[test]
fn a_refusal_names_the_address_the_ipv4_it_carries_and_the_range() {
    let refused = check_address("::ffff:10.0.0.1".parse().unwrap()).unwrap_err();
    assert_eq!(refused.to_string(), "::ffff:10.0.0.1 is not a public address (IPv4-mapped 10.0.0.1: private)");
    let refused = check_address("127.0.0.1".parse().unwrap()).unwrap_err();
    assert_eq!(refused.to_string(), "127.0.0.1 is not a public address (loopback)");
}

/// Given a URL, what the URL alone decides with `allowed_hosts`.
fn when_literal_checked(url: &str, allowed_hosts: &[&str]) -> Result<(), Refused> {
    let allowed: Vec<String> = allowed_hosts.iter().map(|host| host.to_string()).collect();
    Destination::parse(url)?.check_literal(&allowed)
}

#[test]
fn an_ip_literal_is_judged_from_the_url_however_it_is_spelled() {
    for url in [
        "http://[::ffff:169.254.169.254]/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://[64:ff9b::a9fe:a9fe]/x",
        "http://0.1.2.3/x",
        "http://100.64.0.1/x",
        "http://[::ffff:127.0.0.1]:8080/x",
        "http://0x7f.1/x",
        "http://2130706433/x",
        "http://127.1/x",
        "http://0177.0.0.1/x",
        "https://[fe80::1]/x",
    ] {
        assert!(matches!(when_literal_checked(url, &[]), Err(Refused::Address(_))), "{url}");
    }
    assert_eq!(when_literal_checked("https://93.184.216.34/x", &[]), Ok(()));
    assert_eq!(when_literal_checked("https://hooks.example.com/x", &[]), Ok(()), "a name is judged once resolved");
}

#[test]
fn the_allow_list_names_hosts_as_written_in_the_url() {
    let allowed = ["127.0.0.1", "::1", "localhost"];
    assert_eq!(when_literal_checked("http://127.0.0.1:9000/hook", &allowed), Ok(()));
    assert_eq!(when_literal_checked("http://[::1]/hook", &allowed), Ok(()), "brackets are not part of the host");
    assert!(when_literal_checked("http://[::ffff:127.0.0.1]/hook", &allowed).is_err(), "another spelling");
    assert!(when_literal_checked("http://10.0.0.1/hook", &allowed).is_err());
    let allowed: Vec<String> = allowed.iter().map(|host| host.to_string()).collect();
    let given = |url: &str| Destination::parse(url).unwrap();
    assert!(!given("http://localhost/hook").needs_resolution(&allowed), "allow-listed names are not resolved");
    assert!(given("http://hooks.example.com/hook").needs_resolution(&allowed));
    assert!(!given("http://93.184.216.34/hook").needs_resolution(&[]));
}

#[test]
fn a_name_is_admitted_only_when_every_address_it_resolves_to_is_public() {
    let public: Vec<IpAddr> = vec!["93.184.216.34".parse().unwrap(), "2606:4700:4700::1111".parse().unwrap()];
    assert_eq!(check_resolved("hooks.example.com", &public, &[]), Ok(()));
    let one_private = [public[0], "10.0.0.7".parse().unwrap()];
    assert_eq!(
        check_resolved("hooks.example.com", &one_private, &[]).map_err(|refused| refused.to_string()),
        Err("hooks.example.com: 10.0.0.7 is not a public address (private)".to_owned())
    );
    let loopback = ["127.0.0.1".parse().unwrap()];
    assert!(check_resolved("rebound.example.com", &loopback, &[]).is_err());
    assert_eq!(check_resolved("localhost", &loopback, &["localhost".to_owned()]), Ok(()), "allow-listed");
    assert_eq!(
        check_resolved("nowhere.example.com", &[], &[]),
        Err(Refused::DoesNotResolve { host: "nowhere.example.com".into() })
    );
}

#[test]
fn only_http_and_https_urls_with_a_host_are_destinations() {
    assert_eq!(Destination::parse("ftp://example.com/x"), Err(Refused::NotHttp));
    assert_eq!(Destination::parse("not a url"), Err(Refused::NotAUrl));
    assert_eq!(Destination::parse("http:///nohost").map(|d| d.host().to_owned()), Ok("nohost".to_owned()));
    let ipv6 = Destination::parse("https://[::1]:8443/x").unwrap();
    assert_eq!((ipv6.host(), ipv6.port()), ("::1", 8443));
    assert_eq!(Destination::parse("https://example.com/x").map(|d| d.port()), Ok(443));
    assert_eq!(Destination::parse("http://example.com/x").map(|d| d.port()), Ok(80));
}
