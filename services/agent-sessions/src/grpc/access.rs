//! Who may call each RPC of this service (checked by the kernel before any handler runs).
//! An agent's day is the agent's own; the administration is the manager's.

use dw_grpc_kit::access::*;

pub const ACCESS: &[Rule] = &[
    ("dw.agentsessions.v1.ServiceDayService/StartServiceDay", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/NotifyExit", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/CancelExit", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/StartBreak", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/EndBreak", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/EndServiceDay", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/GetMyState", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/GetMyInformation", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/GetMyPermissions", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/ListExitReasons", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/ListBreakReasons", AGENT),
    ("dw.agentsessions.v1.ServiceDayService/GetWorkspaceLinks", AGENT),
    ("dw.agentsessions.v1.AgentAdminService/RegisterAgent", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/GetAgent", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/LinkDepartment", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/UnlinkDepartment", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/GrantPermission", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/RevokePermission", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/ListPermissionCatalog", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/UpdateTenantSettings", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/GetTenantSettings", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/ListAgentStatuses", MANAGER),
    ("dw.agentsessions.v1.AgentAdminService/WatchAgentStatuses", MANAGER),
    // The kernel's paged read of this service's event store (dw_grpc_kit::event_log).
    dw_grpc_kit::event_log::READ_EVENTS,
];

dw_grpc_kit::access_table_test!(super::ACCESS, crate::server::SERVICE_NAMES);
