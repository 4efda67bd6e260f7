//! Who may call each RPC of this service (checked by the kernel before any handler runs).
//! Agents work their own tasks (the handlers check whose); managers and services any of their tenant.

use dw_grpc_kit::access::*;

pub const ACCESS: &[Rule] = &[
    ("dw.distribution.v1.DistributionService/CreateTask", MANAGER_OR_SERVICE),
    ("dw.distribution.v1.DistributionService/GetTask", ANY_ROLE),
    ("dw.distribution.v1.DistributionService/ClaimTask", AGENT),
    ("dw.distribution.v1.DistributionService/CompleteTask", ANY_ROLE),
    ("dw.distribution.v1.DistributionService/TransferTask", ANY_ROLE),
    ("dw.distribution.v1.DistributionService/CancelTask", MANAGER_OR_SERVICE),
    ("dw.distribution.v1.DistributionService/SearchProtocols", ANY_ROLE),
    ("dw.distribution.v1.DistributionService/ListMyTasks", AGENT),
    ("dw.distribution.v1.DistributionService/WatchMyTasks", AGENT),
    ("dw.distribution.v1.DistributionService/GetQueueStats", ANY_ROLE),
    ("dw.distribution.v1.DistributionService/ExplainAssignment", MANAGER),
    ("dw.distribution.v1.DistributionService/GetDistributionSettings", MANAGER_OR_SERVICE),
    ("dw.distribution.v1.DistributionService/UpdateDistributionSettings", MANAGER),
    ("dw.distribution.v1.DistributionService/SetAgentCapacity", MANAGER),
    ("dw.distribution.v1.DistributionService/EraseClientData", MANAGER_OR_SERVICE),
    // The kernel's paged read of this service's event store (dw_grpc_kit::event_log).
    dw_grpc_kit::event_log::READ_EVENTS,
];

dw_grpc_kit::access_table_test!(super::ACCESS, crate::server::SERVICE_NAMES);
