//! The fixed catalog of permissions managers grant to agents.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One entry of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "templates.whatsapp.send")]
    TemplatesWhatsappSend,
    #[serde(rename = "templates.sms.send")]
    TemplatesSmsSend,
    #[serde(rename = "protocols.search")]
    ProtocolsSearch,
    #[serde(rename = "notifications.view")]
    NotificationsView,
    #[serde(rename = "contacts.view")]
    ContactsView,
    #[serde(rename = "tasks.claim")]
    TasksClaim,
    #[serde(rename = "tasks.transfer")]
    TasksTransfer,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Self::TemplatesWhatsappSend,
        Self::TemplatesSmsSend,
        Self::ProtocolsSearch,
        Self::NotificationsView,
        Self::ContactsView,
        Self::TasksClaim,
        Self::TasksTransfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TemplatesWhatsappSend => "templates.whatsapp.send",
            Self::TemplatesSmsSend => "templates.sms.send",
            Self::ProtocolsSearch => "protocols.search",
            Self::NotificationsView => "notifications.view",
            Self::ContactsView => "contacts.view",
            Self::TasksClaim => "tasks.claim",
            Self::TasksTransfer => "tasks.transfer",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::TemplatesWhatsappSend => "Send registered WhatsApp templates to clients",
            Self::TemplatesSmsSend => "Send registered SMS templates to clients",
            Self::ProtocolsSearch => "Search service protocols (tickets) of the tenant",
            Self::NotificationsView => "See the single-notifications log",
            Self::ContactsView => "Search CRM contacts",
            Self::TasksClaim => "Claim queued service tasks by hand",
            Self::TasksTransfer => "Transfer service tasks to another department or agent",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.as_str() == value).ok_or_else(|| {
            let names = Self::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
            format!("unknown permission; one of: {names}")
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
