//! Where outbound HTTP (webhooks, Web Push) may go: the one destination policy, kept in the kernel
//! (`dw-destination`) since messaging-templates judges a send's webhook URL by the same address
//! rules before it accepts the send (see its `domain::send_webhook`).

pub use dw_destination::*;
