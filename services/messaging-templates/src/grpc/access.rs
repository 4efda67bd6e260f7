//! Who may call each RPC of this service (checked by the kernel before any handler runs).
//! Managers author templates; agents send them (with the permission the send checks) and read what they sent.
//! Only managers set or see their tenant's provider accounts.

use dw_grpc_kit::access::*;

pub const ACCESS: &[Rule] = &[
    ("dw.messaging.v1.TemplateService/CreateTemplate", MANAGER),
    ("dw.messaging.v1.TemplateService/UpdateTemplate", MANAGER),
    ("dw.messaging.v1.TemplateService/ArchiveTemplate", MANAGER),
    ("dw.messaging.v1.TemplateService/GetTemplate", ANY_ROLE),
    ("dw.messaging.v1.TemplateService/ListTemplates", ANY_ROLE),
    ("dw.messaging.v1.TemplateService/PreviewTemplate", ANY_ROLE),
    ("dw.messaging.v1.TemplateService/SendTemplate", ANY_ROLE),
    ("dw.messaging.v1.TemplateService/GetMessage", ANY_ROLE),
    ("dw.messaging.v1.ContactService/UpsertContact", MANAGER_OR_SERVICE),
    ("dw.messaging.v1.ContactService/SearchContacts", ANY_ROLE),
    ("dw.messaging.v1.ContactService/GetContact", ANY_ROLE),
    ("dw.messaging.v1.ContactService/EraseClientData", MANAGER_OR_SERVICE),
    ("dw.messaging.v1.ProviderConfigService/SetProviderConfig", MANAGER),
    ("dw.messaging.v1.ProviderConfigService/GetProviderConfig", MANAGER),
    // The kernel's paged read of this service's event store (dw_grpc_kit::event_log).
    dw_grpc_kit::event_log::READ_EVENTS,
];

dw_grpc_kit::access_table_test!(super::ACCESS, crate::server::SERVICE_NAMES);
