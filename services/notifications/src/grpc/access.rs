//! Who may call each RPC of this service (checked by the kernel before any handler runs).
//! Agents read and subscribe to their own notifications; webhooks are the manager's.

use dw_grpc_kit::access::*;

pub const ACCESS: &[Rule] = &[
    ("dw.notifications.v1.NotificationService/ListNotifications", ANY_ROLE),
    ("dw.notifications.v1.NotificationService/GetNotification", ANY_ROLE),
    ("dw.notifications.v1.NotificationService/Subscribe", AGENT),
    ("dw.notifications.v1.NotificationService/EnableBrowserNotifications", AGENT),
    ("dw.notifications.v1.NotificationService/DisableBrowserNotifications", AGENT),
    ("dw.notifications.v1.NotificationService/GetVapidPublicKey", AGENT),
    ("dw.notifications.v1.WebhookService/CreateWebhook", MANAGER),
    ("dw.notifications.v1.WebhookService/ListWebhooks", MANAGER),
    ("dw.notifications.v1.WebhookService/DeleteWebhook", MANAGER),
    ("dw.notifications.v1.WebhookService/RotateWebhookSecret", MANAGER),
    ("dw.notifications.v1.WebhookService/ListDeliveries", MANAGER),
    ("dw.notifications.v1.WebhookService/RedeliverWebhook", MANAGER),
    // The kernel's paged read of this service's event store (dw_grpc_kit::event_log).
    dw_grpc_kit::event_log::READ_EVENTS,
];

dw_grpc_kit::access_table_test!(super::ACCESS, crate::server::SERVICE_NAMES);
