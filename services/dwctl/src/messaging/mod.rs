//! `dwctl templates …`, `dwctl messages …`, `dwctl contacts …`, `dwctl providers …`:
//! messaging-templates' TemplateService, ContactService and ProviderConfigService, and how what
//! they share prints.

pub mod contacts;
pub mod messages;
pub mod providers;
mod template_text;
pub mod templates;

use std::collections::BTreeMap;

use dw_proto::messaging::v1::{Channel, MessageStatus};

use crate::output::{self as out, or_dash};

/// `whatsapp`, `sms`.
pub fn channel(value: i32) -> String {
    out::enum_name_or_dash(value, "CHANNEL_", Channel::as_str_name)
}

/// `requested`, `dispatched`, `delivered`, `read`, `failed`.
pub fn message_status(value: i32) -> String {
    out::enum_name_or_dash(value, "MESSAGE_STATUS_", MessageStatus::as_str_name)
}

/// `k=v, k2=v2` sorted by key, or `-`.
pub fn metadata(map: &BTreeMap<String, String>) -> String {
    let mut pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    out::list(&pairs)
}

/// The statuses a send went through, oldest first: when, which, and the detail of each.
pub fn status_history<'a>(
    changes: impl IntoIterator<Item = (Option<&'a prost_types::Timestamp>, i32, &'a str)>,
) -> String {
    out::table_of(&["AT", "STATUS", "DETAIL"], changes, |(at, status, detail)| {
        vec![out::timestamp(at), message_status(status), or_dash(detail)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::messaging::v1::{HeaderKind, SmsEncoding, TemplateCategory};

    use super::template_text::{category, encoding, header};

    #[test]
    fn enums_render_short() {
        assert_eq!(channel(Channel::Sms as i32), "sms");
        assert_eq!(category(TemplateCategory::Authentication as i32), "authentication");
        assert_eq!(header(HeaderKind::Image as i32), "image");
        assert_eq!(header(HeaderKind::Unspecified as i32), "none");
        assert_eq!(message_status(MessageStatus::Read as i32), "read");
        assert_eq!(encoding(SmsEncoding::Ucs2 as i32), "UCS-2");
        assert_eq!(channel(0), "-");
        assert_eq!(message_status(42), "unknown(42)");
    }
}
