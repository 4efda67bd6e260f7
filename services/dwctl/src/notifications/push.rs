//! Browser push: the VAPID key browsers subscribe with, and the calling agent's subscriptions.

use dw_proto::notifications::v1::{
    BrowserSubscription, DisableBrowserNotificationsResponse, GetVapidPublicKeyResponse,
};

use crate::output as out;

/// The bare key, so `$(dwctl notifications vapid-key)` works in scripts.
pub fn vapid_key_text(key: &GetVapidPublicKeyResponse) -> String {
    key.public_key.clone()
}

pub fn subscription_text(subscription: &BrowserSubscription) -> String {
    format!(
        "browser notifications enabled\n{}",
        out::fields(&[
            ("endpoint", subscription.endpoint.clone()),
            ("created", out::timestamp(subscription.created_at.as_ref())),
        ])
    )
}

pub fn disabled_text(response: &DisableBrowserNotificationsResponse, endpoint: &str) -> String {
    if response.removed {
        format!("browser notifications disabled for {endpoint}")
    } else {
        format!("no browser subscription for {endpoint} (nothing to disable)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::output::{Printer, names};
    use crate::testing::{T0, ts};

    #[test]
    fn push_responses_render() {
        let key = GetVapidPublicKeyResponse { public_key: "BEl62iUYgUivxIkv69yViEuiBIa".into() };
        assert_eq!(vapid_key_text(&key), "BEl62iUYgUivxIkv69yViEuiBIa");
        let subscription = BrowserSubscription { endpoint: "https://push.example/x".into(), created_at: ts(T0) };
        assert_eq!(
            subscription_text(&subscription),
            "browser notifications enabled\nendpoint  https://push.example/x\ncreated   2024-05-01T08:00:00Z\n"
        );
        let removed = DisableBrowserNotificationsResponse { removed: true };
        assert_eq!(
            disabled_text(&removed, "https://push.example/x"),
            "browser notifications disabled for https://push.example/x"
        );
        let absent = DisableBrowserNotificationsResponse { removed: false };
        assert_eq!(
            disabled_text(&absent, "https://push.example/x"),
            "no browser subscription for https://push.example/x (nothing to disable)"
        );
        let printer = Printer::new(true).unwrap();
        assert_eq!(printer.to_json(names::VAPID_PUBLIC_KEY, &key).unwrap()["publicKey"], key.public_key);
        assert_eq!(printer.to_json(names::DISABLE_BROWSER_NOTIFICATIONS, &absent).unwrap()["removed"], false);
        let value = printer.to_json(names::BROWSER_SUBSCRIPTION, &subscription).unwrap();
        assert_eq!(value["createdAt"], "2024-05-01T08:00:00Z");
    }
}
