//! The Digital Workspace contract: generated Rust types and gRPC stubs for every `dw.*.v1`
//! package, plus the encoded descriptor set for gRPC reflection.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]

/// Encoded `FileDescriptorSet` of every proto in this crate (for `tonic-reflection`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dw_descriptor.bin"));

pub mod codec;
pub mod hygiene;

static DESCRIPTOR_POOL: std::sync::LazyLock<Option<prost_reflect::DescriptorPool>> =
    std::sync::LazyLock::new(|| prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).ok());

/// The contract's descriptors, for reflection over requests (`None` only if the embedded set
/// does not decode, which a test of this crate rules out).
pub fn descriptor_pool() -> Option<&'static prost_reflect::DescriptorPool> {
    DESCRIPTOR_POOL.as_ref()
}

/// The methods of a service of the contract whose request carries a `request_id`: the ones
/// that change state (every mutation is idempotent by it).
pub fn mutating_methods(service: &str) -> Option<Vec<String>> {
    let service = descriptor_pool()?.get_service_by_name(service)?;
    Some(
        service
            .methods()
            .filter(|method| method.input().get_field_by_name("request_id").is_some())
            .map(|method| method.name().to_owned())
            .collect(),
    )
}

/// The method names of a service of the contract (`dw.agentsessions.v1.ServiceDayService`),
/// `None` for a service it does not have.
pub fn service_methods(service: &str) -> Option<Vec<String>> {
    let service = descriptor_pool()?.get_service_by_name(service)?;
    Some(service.methods().map(|method| method.name().to_owned()).collect())
}

pub mod agentsessions {
    pub mod v1 {
        tonic::include_proto!("dw.agentsessions.v1");
        include!(concat!(env!("OUT_DIR"), "/dw.agentsessions.v1.events.rs"));
    }
}

pub mod distribution {
    pub mod v1 {
        tonic::include_proto!("dw.distribution.v1");
        include!(concat!(env!("OUT_DIR"), "/dw.distribution.v1.events.rs"));
    }
}

pub mod messaging {
    pub mod v1 {
        tonic::include_proto!("dw.messaging.v1");
        include!(concat!(env!("OUT_DIR"), "/dw.messaging.v1.events.rs"));

        /// A secret field as `Debug` shows it: whether it is set, never its value.
        fn redacted(secret: &str) -> &'static str {
            if secret.is_empty() { "\"\"" } else { "<redacted>" }
        }

        impl std::fmt::Debug for WhatsappProviderSettings {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("WhatsappProviderSettings")
                    .field("phone_number_id", &self.phone_number_id)
                    .field("app_secret", &format_args!("{}", redacted(&self.app_secret)))
                    .field("verify_token", &format_args!("{}", redacted(&self.verify_token)))
                    .finish()
            }
        }

        impl std::fmt::Debug for SmsProviderSettings {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SmsProviderSettings")
                    .field("account_sid", &self.account_sid)
                    .field("auth_token", &format_args!("{}", redacted(&self.auth_token)))
                    .finish()
            }
        }
    }
}

/// A context's events as one decodable type (`<context>::v1::Event`, generated from its
/// `events.proto`): what a consumer of that context's stream matches on.
pub trait Contract: Sized + Send + std::fmt::Debug + 'static {
    /// The protobuf package, e.g. `dw.agentsessions.v1`.
    const PACKAGE: &'static str;

    /// Older shapes of this contract's events that stored events may still have, each turned
    /// into a newer one before decoding ([`decode_current`]). Empty while no event changed shape.
    const UPCASTERS: &'static [Upcaster] = &[];

    /// `None` when `event_type` is not an event of this contract.
    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, prost::DecodeError>;

    fn type_name(&self) -> &'static str;
}

/// One step of event upcasting: a stored event of type `from` becomes an event of type `to`
/// with the payload `upgrade` makes of the old one. Stored events are never rewritten; every
/// read (an aggregate's replay, a consumer, a backfill, a rebuild) upgrades them on the way in.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub from: &'static str,
    pub to: &'static str,
    pub upgrade: fn(&[u8]) -> Result<Vec<u8>, prost::DecodeError>,
}

/// The one place stored events are decoded: `C`'s upcasters applied in turn (an upgraded event
/// may be upgraded again, at most once per upcaster), then `C::decode` of what results.
pub fn decode_current<C: Contract>(event_type: &str, payload: &[u8]) -> Result<Option<C>, prost::DecodeError> {
    let mut event_type = std::borrow::Cow::Borrowed(event_type);
    let mut payload = std::borrow::Cow::Borrowed(payload);
    for _ in 0..C::UPCASTERS.len() {
        let Some(step) = C::UPCASTERS.iter().find(|step| step.from == event_type) else { break };
        payload = std::borrow::Cow::Owned((step.upgrade)(&payload)?);
        event_type = std::borrow::Cow::Borrowed(step.to);
    }
    C::decode(&event_type, &payload)
}

#[cfg(test)]
mod upcasting_tests {
    use super::{Contract, Upcaster, decode_current};
    use prost::Message;

    /// Version 0 counted in a 32-bit field 1; version 1 counts in a 64-bit field 2 and names
    /// the counter; version 2 is version 1 under a new name.
    #[derive(Clone, PartialEq, prost::Message)]
    struct CountedV0 {
        #[prost(uint32, tag = "1")]
        n: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Counted {
        #[prost(int64, tag = "2")]
        count: i64,
        #[prost(string, tag = "3")]
        counter: String,
    }

    fn v0_to_v1(payload: &[u8]) -> Result<Vec<u8>, prost::DecodeError> {
        let old = CountedV0::decode(payload)?;
        Ok(Counted { count: i64::from(old.n), counter: "default".into() }.encode_to_vec())
    }

    fn renamed(payload: &[u8]) -> Result<Vec<u8>, prost::DecodeError> {
        Ok(payload.to_vec())
    }

    #[derive(Debug, PartialEq)]
    enum TestEvent {
        Counted(i64, String),
    }

    impl Contract for TestEvent {
        const PACKAGE: &'static str = "test.v2";
        const UPCASTERS: &'static [Upcaster] = &[
            Upcaster { from: "test.v1.Counted", to: "test.v2.Counted", upgrade: renamed },
            Upcaster { from: "test.v0.Counted", to: "test.v1.Counted", upgrade: v0_to_v1 },
        ];

        fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, prost::DecodeError> {
            if event_type != "test.v2.Counted" {
                return Ok(None);
            }
            let m = Counted::decode(payload)?;
            Ok(Some(TestEvent::Counted(m.count, m.counter)))
        }

        fn type_name(&self) -> &'static str {
            "test.v2.Counted"
        }
    }

    #[test]
    fn an_old_event_is_upgraded_step_by_step_before_it_is_decoded() {
        let old = CountedV0 { n: 7 }.encode_to_vec();
        assert_eq!(
            decode_current::<TestEvent>("test.v0.Counted", &old).unwrap(),
            Some(TestEvent::Counted(7, "default".into()))
        );
        let current = Counted { count: 9, counter: "c".into() }.encode_to_vec();
        assert_eq!(
            decode_current::<TestEvent>("test.v2.Counted", &current).unwrap(),
            Some(TestEvent::Counted(9, "c".into()))
        );
        assert_eq!(
            decode_current::<TestEvent>("test.v1.Counted", &current).unwrap(),
            Some(TestEvent::Counted(9, "c".into()))
        );
        assert_eq!(decode_current::<TestEvent>("test.v9.Other", &current).unwrap(), None);
        assert!(
            decode_current::<TestEvent>("test.v0.Counted", b"\xff\xff").is_err(),
            "an old payload that does not decode"
        );
    }
}

/// Conversions between protobuf well-known time types and `chrono`.
pub mod time {
    use chrono::{DateTime, Utc};

    pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
    }

    /// `None` when out of chrono's range or with negative nanos.
    pub fn datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
    }

    pub fn duration_from_millis(ms: i64) -> prost_types::Duration {
        prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
    }

    pub fn millis(duration: &prost_types::Duration) -> i64 {
        duration.seconds * 1000 + i64::from(duration.nanos) / 1_000_000
    }
}

pub mod notifications {
    pub mod v1 {
        tonic::include_proto!("dw.notifications.v1");
    }
}

/// The event log every service offers about its own store (`ReadEvents`).
pub mod eventlog {
    pub mod v1 {
        tonic::include_proto!("dw.eventlog.v1");
    }
}

#[cfg(test)]
mod tests {
    use super::Contract;

    #[test]
    fn the_descriptor_set_lists_the_services_methods() {
        let methods = super::service_methods("dw.notifications.v1.WebhookService").unwrap();
        assert!(methods.iter().any(|m| m == "RedeliverWebhook"), "{methods:?}");
        assert!(super::service_methods("dw.nothing.v1.Nope").is_none());
        let mutating = super::mutating_methods("dw.notifications.v1.WebhookService").unwrap();
        assert!(mutating.iter().any(|m| m == "CreateWebhook"), "{mutating:?}");
        assert!(!mutating.iter().any(|m| m == "ListWebhooks"), "{mutating:?}");
    }

    /// Every type of a contract decodes (an empty payload is a valid protobuf message) to the
    /// variant that names it, and that name is the message's own `prost::Name`.
    fn round_trips<C: Contract>(types: &[&str]) {
        for event_type in types {
            let decoded = C::decode(event_type, &[]).unwrap().unwrap();
            assert_eq!(decoded.type_name(), *event_type);
            assert!(event_type.starts_with(C::PACKAGE));
        }
        assert!(C::decode(&format!("{}.NotAnEvent", C::PACKAGE), &[]).unwrap().is_none());
    }

    #[test]
    fn the_event_contracts_cover_their_events_proto() {
        use prost::Name;
        round_trips::<crate::agentsessions::v1::Event>(crate::agentsessions::v1::Event::TYPES);
        round_trips::<crate::distribution::v1::Event>(crate::distribution::v1::Event::TYPES);
        round_trips::<crate::messaging::v1::Event>(crate::messaging::v1::Event::TYPES);
        assert_eq!(crate::agentsessions::v1::Event::TYPES.len(), 12);
        assert_eq!(crate::distribution::v1::Event::TYPES.len(), 9);
        assert_eq!(crate::messaging::v1::Event::TYPES.len(), 14);
        assert!(
            crate::agentsessions::v1::Event::TYPES
                .contains(&crate::agentsessions::v1::BreakStarted::full_name().as_str())
        );
        let undecodable = crate::distribution::v1::Event::decode("dw.distribution.v1.TaskCreated", &[0xff, 0xff]);
        assert!(undecodable.is_err(), "a payload that is not the message is an error, not a skip");
    }

    #[test]
    fn provider_secrets_never_print() {
        use crate::messaging::v1::{SetProviderConfigRequest, SmsProviderSettings, WhatsappProviderSettings};
        let request = SetProviderConfigRequest {
            request_id: "r-1".into(),
            whatsapp: Some(WhatsappProviderSettings {
                phone_number_id: "1055".into(),
                app_secret: "app-secret-value".into(),
                verify_token: String::new(),
            }),
            sms: Some(SmsProviderSettings { account_sid: "AC1".into(), auth_token: "auth-token-value".into() }),
            ..Default::default()
        };
        let printed = format!("{request:?} {request:#?}");
        assert!(!printed.contains("app-secret-value") && !printed.contains("auth-token-value"), "{printed}");
        assert!(printed.contains("1055") && printed.contains("AC1") && printed.contains("<redacted>"), "{printed}");
        assert!(printed.contains("verify_token: \"\""), "an empty secret shows as empty: {printed}");
    }
}
