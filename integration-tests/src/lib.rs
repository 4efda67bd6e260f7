//! Support for cross-service tests: locating the workspace's built binaries and running them as
//! real processes (`make test` builds them first with `cargo build --workspace --bins`).

pub mod cluster;
pub mod tls;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// `target/<profile>/<name>` of this workspace (honours `CARGO_TARGET_DIR`), debug first.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    anyhow::Context::context(binary_of(&["debug", "release"], name), "run `cargo build --workspace --bins` first")
}

/// `target/<profile>/<name>` for the first of `profiles` that has it built.
pub fn binary_of(profiles: &[&str], name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    for profile in profiles {
        let path = target.join(profile).join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    anyhow::bail!("binary {name} not built under {} ({})", target.display(), profiles.join(", "))
}

/// A free port for a process the test starts, below the kernel's ephemeral range
/// ([`dw_testkit::free_port`]).
pub fn free_port() -> anyhow::Result<u16> {
    dw_testkit::free_port()
}

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Spawns with stdout (the service logs) discarded, or shown when `DW_TEST_SHOW_LOGS` is set.
    pub fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let stdout = if std::env::var_os("DW_TEST_SHOW_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() };
        Ok(Self(command.stdout(stdout).spawn()?))
    }
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing listens on 127.0.0.1:{port}")
}

/// Runs a command to completion, failing with its stderr when it fails.
pub fn run_ok(command: &mut Command) -> anyhow::Result<Output> {
    let output = command.output()?;
    if !output.status.success() {
        anyhow::bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A bearer token for `sub` in `tenant` with `role`, valid for an hour, signed with `secret`.
pub fn token(secret: &str, tenant: &str, sub: &str, role: dw_auth::Role) -> anyhow::Result<String> {
    if secret.len() < dw_auth::MIN_SECRET_LEN {
        anyhow::bail!("a signing secret needs at least {} bytes", dw_auth::MIN_SECRET_LEN);
    }
    Ok(dw_testkit::token(secret, tenant, sub, &[role]))
}

pub use dw_testkit::{authed, rid};

/// A chat task for the `support` department, priority 5, from a client.
pub fn support_chat_task(name: &str, phone: &str, subject: &str) -> dw_proto::distribution::v1::CreateTaskRequest {
    use dw_proto::distribution::v1 as distribution;
    distribution::CreateTaskRequest {
        request_id: rid(),
        department_id: "support".into(),
        channel: distribution::Channel::Chat as i32,
        contact: Some(distribution::ClientContact {
            name: name.into(),
            phone: phone.into(),
            contact_id: String::new(),
        }),
        priority: 5,
        subject: subject.into(),
    }
}
