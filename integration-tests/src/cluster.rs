//! A cluster of its own for one test: a PostgreSQL initialised into a temporary directory on a
//! free port, a nats-server with JetStream on a free port and its own store directory, and the
//! services as processes. Each of them can be killed and started again, which disturbs no other
//! test (they all use the shared servers).
//!
//! The work directory (data, store, one log file per process) is removed when the test passes
//! and kept, with its path printed, when it fails.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;

use crate::{Process, free_port, wait_for_port};

/// A temporary directory, removed on drop unless the thread is panicking (a failed test keeps
/// its logs).
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("dw-{label}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// An append-mode log file in the directory.
    pub fn log(&self, name: &str) -> anyhow::Result<File> {
        Ok(OpenOptions::new().create(true).append(true).open(self.0.join(format!("{name}.log")))?)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: its processes' logs and data are kept in {}", self.0.display());
            // CI keeps only what the test prints: the logs' errors, for a process that died.
            for (log, lines) in log_errors(&self.0, 8) {
                eprintln!("--- errors in {log} (last {}):", lines.len());
                for line in lines {
                    eprintln!("    {line}");
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The last `keep` error lines (level ERROR, a panic, a process's `Error:` exit) of each `*.log`
/// in `dir`, each cut at 600 characters; logs without any are left out.
pub fn log_errors(dir: &Path, keep: usize) -> Vec<(String, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    let mut found = Vec::new();
    for log in logs {
        let Ok(bytes) = std::fs::read(&log) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let errors: Vec<&str> = text
            .lines()
            .filter(|line| {
                line.contains(" ERROR ")
                    || line.contains("\"level\":\"ERROR\"")
                    || line.contains("panicked")
                    || line.starts_with("Error:")
            })
            .collect();
        if errors.is_empty() {
            continue;
        }
        let lines = errors[errors.len().saturating_sub(keep)..]
            .iter()
            .map(|line| line.chars().take(600).collect::<String>())
            .collect();
        found.push((log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), lines));
    }
    found
}

/// Sends `signal` (e.g. "KILL", "QUIT") to the process and waits up to 30 s for it to exit.
pub async fn signal_and_wait(process: &mut Process, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(process.0.id().to_string()).status()?;
    if !status.success() && process.0.try_wait()?.is_none() {
        bail!("kill -{signal} {} failed", process.0.id());
    }
    for _ in 0..300 {
        if process.0.try_wait()?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("process {} did not exit after SIG{signal}", process.0.id())
}

fn spawn_logged(command: &mut Command, log: File) -> anyhow::Result<Process> {
    let err = log.try_clone()?;
    Ok(Process(command.stdin(Stdio::null()).stdout(log).stderr(err).spawn()?))
}

/// uid and gid of the `postgres` user when this test runs as root (PostgreSQL refuses root).
fn postgres_identity() -> anyhow::Result<Option<(u32, u32)>> {
    let uid = String::from_utf8(Command::new("id").arg("-u").output()?.stdout)?;
    if uid.trim() != "0" {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres") && fields.len() > 3 {
            return Ok(Some((fields[2].parse()?, fields[3].parse()?)));
        }
    }
    bail!("running as root and there is no postgres user to run PostgreSQL as")
}

/// PostgreSQL's server binaries: `DW_PG_BINDIR`, else the newest /usr/lib/postgresql/<v>/bin.
fn postgres_bindir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DW_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (set DW_PG_BINDIR to the directory holding initdb and postgres)")?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).context("no initdb under /usr/lib/postgresql/*/bin")
}

/// A PostgreSQL server of the test's own (trust authentication, user `postgres`).
pub struct Postgres {
    bindir: PathBuf,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    pub port: u16,
    /// TCP takes TLS only (`hostssl`); the test's own set-up goes through the Unix socket.
    tls_only: bool,
    process: Option<Process>,
}

/// A server that takes TCP connections over TLS only, with `server`'s certificate. With
/// `cert_login` (a CA and a user), that user must log in with a client certificate the CA signed
/// whose common name is the user's name (`cert` authentication); the others are trusted.
pub struct PostgresTls<'a> {
    pub server: &'a crate::tls::CertFiles,
    pub cert_login: Option<(&'a Path, &'a str)>,
}

impl Postgres {
    /// `initdb` into `<work>/pgdata`, then starts the server.
    pub async fn start(work: &WorkDir) -> anyhow::Result<Self> {
        Self::start_configured(work, None).await
    }

    /// [`start`](Self::start) with TLS: `ssl = on` and a `pg_hba.conf` of `hostssl` lines only, so
    /// a plaintext TCP connection is refused.
    pub async fn start_with_tls(work: &WorkDir, tls: PostgresTls<'_>) -> anyhow::Result<Self> {
        Self::start_configured(work, Some(tls)).await
    }

    async fn start_configured(work: &WorkDir, tls: Option<PostgresTls<'_>>) -> anyhow::Result<Self> {
        let bindir = postgres_bindir()?;
        let run_as = postgres_identity()?;
        let root = work.path().join("pg");
        std::fs::create_dir_all(&root)?;
        if run_as.is_some() {
            crate::run_ok(Command::new("chown").arg("-R").arg("postgres:postgres").arg(&root))?;
        }
        let data = root.join("data");
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"]);
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        crate::run_ok(&mut initdb).context("initdb")?;
        let tls_only = tls.is_some();
        if let Some(tls) = tls {
            configure_tls(&data, &tls)?;
            if run_as.is_some() {
                crate::run_ok(Command::new("chown").arg("-R").arg("postgres:postgres").arg(&data))?;
            }
        }
        let mut postgres = Self { bindir, data, run_as, port: free_port()?, tls_only, process: None };
        postgres.restart(work).await?;
        Ok(postgres)
    }

    /// Starts the server on its data directory (after a crash: with recovery).
    pub async fn restart(&mut self, work: &WorkDir) -> anyhow::Result<()> {
        let mut command = Command::new(self.bindir.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.data.parent().unwrap_or(&self.data).display()))
            .args(["-c", "max_connections=300", "-c", "fsync=off", "-c", "full_page_writes=off"]);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        self.process = Some(spawn_logged(&mut command, work.log("postgres")?)?);
        for _ in 0..300 {
            if let Ok(conn) = sqlx::PgConnection::connect(&self.admin_url("postgres")).await {
                let _ = conn.close().await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("PostgreSQL did not accept connections on port {}", self.port)
    }

    /// An immediate shutdown (SIGQUIT): no checkpoint, crash recovery on the next start.
    pub async fn crash(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            signal_and_wait(&mut process, "QUIT").await?;
        }
        Ok(())
    }

    /// The TCP URL of `database` (add `sslmode` and the certificates for a TLS-only server).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A URL the test's own set-up can always use: the Unix socket for a TLS-only server.
    pub fn admin_url(&self, database: &str) -> String {
        if !self.tls_only {
            return self.url(database);
        }
        let socket_dir = self.data.parent().unwrap_or(&self.data);
        format!("postgres://postgres@localhost/{database}?host={}&port={}", socket_dir.display(), self.port)
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url("postgres")).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        Ok(self.url(name))
    }
}

/// `ssl = on` with the server's certificate in the data directory, and a `pg_hba.conf` that
/// takes TCP over TLS only (the Unix socket stays open to the test, with trust).
fn configure_tls(data: &Path, tls: &PostgresTls<'_>) -> anyhow::Result<()> {
    std::fs::copy(&tls.server.cert, data.join("server.crt"))?;
    let key = std::fs::read_to_string(&tls.server.key)?;
    crate::tls::write_private(&data.join("server.key"), &key)?;
    let mut conf = String::from("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    let mut hba = String::from("local all all trust\n");
    if let Some((ca, user)) = tls.cert_login {
        std::fs::copy(ca, data.join("client-ca.crt"))?;
        conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
        hba.push_str(&format!("hostssl all {user} 127.0.0.1/32 cert\n"));
    }
    hba.push_str("hostssl all all 127.0.0.1/32 trust\n");
    let mut postgresql_conf = OpenOptions::new().append(true).open(data.join("postgresql.conf"))?;
    std::io::Write::write_all(&mut postgresql_conf, conf.as_bytes())?;
    std::fs::write(data.join("pg_hba.conf"), hba)?;
    Ok(())
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(process) = &mut self.process {
            // Immediate shutdown: the children exit with the postmaster.
            let _ = Command::new("kill").arg("-QUIT").arg(process.0.id().to_string()).status();
            let _ = process.0.wait();
        }
    }
}

/// A nats-server with JetStream of the test's own.
pub struct Nats {
    store: PathBuf,
    pub port: u16,
    /// The server's configuration file, for a secured server.
    config_file: Option<PathBuf>,
    /// How the harness itself connects (to see that JetStream answers).
    client: dw_grpc_kit::config::NatsSecurity,
    process: Option<Process>,
}

/// A server that takes TLS connections only (`server`'s certificate), verifies client
/// certificates that `ca` signed when `verify_clients`, and admits only the NKey users whose
/// public keys are `nkey_users`. `client` is how the harness connects to it.
pub struct NatsSecured<'a> {
    pub server: &'a crate::tls::CertFiles,
    pub ca: &'a Path,
    pub verify_clients: bool,
    pub nkey_users: &'a [String],
    pub client: dw_grpc_kit::config::NatsSecurity,
}

impl Nats {
    pub async fn start(work: &WorkDir) -> anyhow::Result<Self> {
        let store = work.path().join("nats");
        std::fs::create_dir_all(&store)?;
        let mut nats = Self { store, port: free_port()?, config_file: None, client: Default::default(), process: None };
        nats.restart(work).await?;
        Ok(nats)
    }

    /// [`start`](Self::start) secured by TLS and NKey users, from a configuration file.
    pub async fn start_secured(work: &WorkDir, secured: NatsSecured<'_>) -> anyhow::Result<Self> {
        let store = work.path().join("nats");
        std::fs::create_dir_all(&store)?;
        let port = free_port()?;
        let users: Vec<String> = secured.nkey_users.iter().map(|key| format!("    {{ nkey: \"{key}\" }}")).collect();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\n\
             jetstream {{ store_dir: \"{store}\" }}\n\
             tls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  ca_file: \"{ca}\"\n  verify: {verify}\n  timeout: 5\n}}\n\
             authorization {{\n  users = [\n{users}\n  ]\n}}\n",
            store = store.display(),
            cert = secured.server.cert.display(),
            key = secured.server.key.display(),
            ca = secured.ca.display(),
            verify = secured.verify_clients,
            users = users.join("\n"),
        );
        let config_file = work.path().join("nats-server.conf");
        std::fs::write(&config_file, config)?;
        let mut nats = Self { store, port, config_file: Some(config_file), client: secured.client, process: None };
        nats.restart(work).await?;
        Ok(nats)
    }

    /// Starts the server on its store directory (streams and consumers are recovered).
    pub async fn restart(&mut self, work: &WorkDir) -> anyhow::Result<()> {
        let binary = std::env::var_os("DW_NATS_SERVER").map(PathBuf::from).unwrap_or_else(|| "nats-server".into());
        let mut command = Command::new(binary);
        match &self.config_file {
            Some(config) => command.arg("-c").arg(config),
            None => command.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"]).arg(&self.store),
        };
        self.process = Some(spawn_logged(&mut command, work.log("nats")?).context("starting nats-server")?);
        wait_for_port(self.port).await?;
        // JetStream answers once the server has recovered its store.
        for _ in 0..300 {
            let connected = match dw_grpc_kit::startup::nats_connect_options(&self.client) {
                Ok(options) => options.connect(self.url()).await.ok(),
                Err(_) => None,
            };
            if let Some(client) = connected
                && client.request("$JS.API.INFO", "".into()).await.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("JetStream did not answer on port {}", self.port)
    }

    /// SIGKILL: the server dies without a goodbye to its clients.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            signal_and_wait(&mut process, "KILL").await?;
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// One service binary with its environment, restartable.
pub struct Service {
    pub name: String,
    pub grpc_port: u16,
    env: Vec<(String, String)>,
    process: Option<Process>,
}

impl Service {
    pub fn new(name: &str, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let grpc_port = free_port()?;
        let mut env = env;
        env.push(("GRPC_ADDR".into(), format!("127.0.0.1:{grpc_port}")));
        env.push(("METRICS_ADDR".into(), format!("127.0.0.1:{}", free_port()?)));
        Ok(Self { name: name.to_owned(), grpc_port, env, process: None })
    }

    /// Starts the binary and waits until its gRPC port answers.
    pub async fn start(&mut self, work: &WorkDir) -> anyhow::Result<()> {
        let mut command = Command::new(crate::binary(&self.name)?);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.process = Some(spawn_logged(&mut command, work.log(&self.name)?)?);
        wait_for_port(self.grpc_port).await.with_context(|| format!("{} did not start", self.name))
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            signal_and_wait(&mut process, "KILL").await?;
        }
        Ok(())
    }

    /// SIGTERM, for a graceful stop.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            signal_and_wait(&mut process, "TERM").await?;
        }
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }
}

/// A 3-node nats-server cluster with JetStream of the test's own (streams can have 3 replicas).
/// Each node can be killed and started again on its store.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

pub struct NatsNode {
    pub name: String,
    pub port: u16,
    cluster_port: u16,
    store: PathBuf,
    process: Option<Process>,
}

impl NatsCluster {
    pub async fn start(work: &WorkDir, size: usize) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for i in 0..size {
            let store = work.path().join(format!("nats-n{i}"));
            std::fs::create_dir_all(&store)?;
            nodes.push(NatsNode {
                name: format!("n{i}"),
                port: free_port()?,
                cluster_port: free_port()?,
                store,
                process: None,
            });
        }
        let mut cluster = Self { nodes };
        for i in 0..size {
            cluster.spawn(work, i)?;
        }
        for i in 0..size {
            wait_for_port(cluster.nodes[i].port).await?;
        }
        cluster.wait_for_jetstream().await?;
        Ok(cluster)
    }

    fn spawn(&mut self, work: &WorkDir, index: usize) -> anyhow::Result<()> {
        let routes =
            self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.cluster_port)).collect::<Vec<_>>().join(",");
        let node = &mut self.nodes[index];
        let binary = std::env::var_os("DW_NATS_SERVER").map(PathBuf::from).unwrap_or_else(|| "nats-server".into());
        let mut command = Command::new(binary);
        command
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string(), "-n", &node.name, "--cluster_name", "dw"])
            .args(["-cluster", &format!("nats://127.0.0.1:{}", node.cluster_port), "-routes", &routes])
            .args(["-js", "-sd"])
            .arg(&node.store);
        node.process = Some(spawn_logged(&mut command, work.log(&format!("nats-{}", node.name))?)?);
        Ok(())
    }

    /// Waits until the cluster's JetStream has a meta leader (it answers account info).
    pub async fn wait_for_jetstream(&self) -> anyhow::Result<()> {
        for _ in 0..300 {
            if let Ok(client) = async_nats::connect(self.addrs()).await
                && let Ok(reply) = client.request("$JS.API.INFO", "".into()).await
                && !String::from_utf8_lossy(&reply.payload).contains("\"error\"")
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the JetStream cluster did not answer")
    }

    /// Every node's URL, comma-separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// Every node's address, for a client of the test's own.
    pub fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.nodes.iter().filter_map(|n| format!("nats://127.0.0.1:{}", n.port).parse().ok()).collect()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// SIGKILL one node.
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut process) = self.nodes[index].process.take() {
            signal_and_wait(&mut process, "KILL").await?;
        }
        Ok(())
    }

    /// Starts a killed node again on its store.
    pub async fn restart(&mut self, work: &WorkDir, index: usize) -> anyhow::Result<()> {
        self.spawn(work, index)?;
        wait_for_port(self.nodes[index].port).await
    }
}

#[cfg(test)]
mod log_error_tests {
    use super::*;

    #[test]
    fn a_failed_test_shows_the_error_lines_of_its_processes_logs() {
        let work = WorkDir::new("log-errors").unwrap();
        std::fs::write(
            work.path().join("notifications.log"),
            "{\"level\":\"INFO\",\"message\":\"starting\"}\n\
             {\"level\":\"ERROR\",\"message\":\"bind 127.0.0.1:1: address in use\"}\n\
             Error: bind 127.0.0.1:1\n",
        )
        .unwrap();
        std::fs::write(work.path().join("quiet.log"), "{\"level\":\"INFO\",\"message\":\"serving\"}\n").unwrap();
        std::fs::write(work.path().join("notes.txt"), "Error: not a log\n").unwrap();
        let found = log_errors(work.path(), 1);
        assert_eq!(found, vec![("notifications.log".to_owned(), vec!["Error: bind 127.0.0.1:1".to_owned()])]);
    }

    #[test]
    fn ports_are_never_given_twice_and_are_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| crate::free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
