//! notifications binary: `serve` (the default), `migrate`, `dead-letters`; `--help` lists them.

fn main() -> anyhow::Result<()> {
    dw_grpc_kit::cli::main::<notifications::server::Notifications>()
}
