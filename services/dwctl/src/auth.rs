//! Tokens: the one given (--token, DWCTL_TOKEN, DW_TOKEN), the one in a file (--token-file,
//! DWCTL_TOKEN_FILE), or one minted from the global options for development (`dwctl token`
//! prints one).

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use dw_auth::{JwtVerifier, Role, TenantId};

use crate::cli::GlobalOpts;
use crate::output;

/// Mints a token for `sub` in `tenant`, signed with `secret`, valid `ttl_seconds` from now.
pub fn mint(secret: &str, tenant: &str, sub: &str, roles: &[Role], ttl_seconds: i64) -> Result<String> {
    TenantId::parse(tenant).map_err(|reason| anyhow!("invalid tenant {tenant:?}: {reason}"))?;
    let sub = sub.trim();
    if sub.is_empty() {
        bail!("the subject (--sub) must not be empty");
    }
    if roles.is_empty() {
        bail!("a token needs at least one --role (agent, manager or service)");
    }
    let verifier = JwtVerifier::new(secret.as_bytes()).context("invalid signing secret (--secret / DW_JWT_SECRET)")?;
    let now = chrono::Utc::now().timestamp();
    Ok(dw_auth::mint(&verifier, sub, tenant, roles, now, ttl_seconds))
}

/// Mints a token from --tenant, --sub, --role and --secret.
pub fn mint_from_options(opts: &GlobalOpts) -> Result<String> {
    let mut missing = Vec::new();
    if opts.tenant.is_none() {
        missing.push("--tenant (DW_TENANT)");
    }
    if opts.sub.is_none() {
        missing.push("--sub (DW_SUB)");
    }
    if opts.roles.is_empty() {
        missing.push("--role (DW_ROLE)");
    }
    let secret = signing_secret(opts)?;
    if secret.is_none() {
        missing.push("--secret (DW_JWT_SECRET) or --secret-file (DW_JWT_SECRET_FILE)");
    }
    match (&secret, &opts.tenant, &opts.sub) {
        (Some(secret), Some(tenant), Some(sub)) if missing.is_empty() => {
            mint(secret, tenant, sub, &opts.roles, opts.ttl_seconds)
        }
        _ => Err(anyhow!("cannot mint a token: missing {}", missing.join(", "))),
    }
}

/// `dwctl token`: prints a token minted from the options; with `--json`, with its expiry too.
pub fn print_token(opts: &GlobalOpts) -> Result<()> {
    let token = mint_from_options(opts)?;
    if !opts.json {
        return output::write_line(&token);
    }
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(opts.ttl_seconds);
    let value = serde_json::json!({
        "token": token,
        "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    output::write_line(&serde_json::to_string_pretty(&value)?)
}

/// The signing secret for minting: --secret (DW_JWT_SECRET), else the file --secret-file
/// (DW_JWT_SECRET_FILE) without its trailing newline.
pub fn signing_secret(opts: &GlobalOpts) -> Result<Option<String>> {
    if let Some(secret) = opts.secret.as_deref().filter(|s| !s.is_empty()) {
        return Ok(Some(secret.to_owned()));
    }
    let Some(path) = &opts.secret_file else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the signing secret file {}", path.display()))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()).filter(|s| !s.is_empty()))
}

/// The token for an RPC: --token (DWCTL_TOKEN, else DW_TOKEN) when given, else the one in
/// --token-file (DWCTL_TOKEN_FILE), else one minted from the options.
pub fn resolve(opts: &GlobalOpts) -> Result<String> {
    let given = [&opts.token, &opts.dw_token].into_iter().flatten().map(|t| t.trim()).find(|t| !t.is_empty());
    if let Some(token) = given {
        return Ok(without_scheme(token).to_owned());
    }
    if let Some(path) = &opts.token_file {
        return read_token_file(path);
    }
    mint_from_options(opts).context(
        "no token: pass --token (DWCTL_TOKEN) or --token-file (DWCTL_TOKEN_FILE), or --tenant, --sub, --role and --secret",
    )
}

fn without_scheme(token: &str) -> &str {
    token.strip_prefix("Bearer ").unwrap_or(token).trim()
}

/// The token in a file: its whole content, trimmed (a trailing newline, `Bearer ` allowed).
fn read_token_file(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = without_scheme(text.trim());
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        bail!("the token file {} does not hold one token", path.display());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    const SECRET: &str = "test-secret-of-sufficient-length";

    #[test]
    fn minted_tokens_verify_with_the_same_secret() {
        let token = mint(SECRET, "acme", "ana", &[Role::Agent, Role::Manager], 60).unwrap();
        let verifier = JwtVerifier::new(SECRET.as_bytes()).unwrap();
        let principal = verifier.verify(&token, chrono::Utc::now().timestamp()).unwrap();
        assert_eq!(principal.subject(), "ana");
        assert_eq!(principal.tenant().as_str(), "acme");
        assert!(principal.has_role(Role::Manager));
    }

    #[test]
    fn minting_validates_its_inputs() {
        assert!(mint(SECRET, "Not A Tenant", "ana", &[Role::Agent], 60).is_err());
        assert!(mint(SECRET, "acme", " ", &[Role::Agent], 60).is_err());
        assert!(mint(SECRET, "acme", "ana", &[], 60).is_err());
        assert!(mint("short", "acme", "ana", &[Role::Agent], 60).is_err());
    }

    #[test]
    fn an_explicit_token_wins_and_missing_options_are_named() {
        let cli = crate::cli::Cli::try_parse_from(["dwctl", "--token", "Bearer abc.def.ghi", "day", "state"]).unwrap();
        assert_eq!(resolve(&cli.global).unwrap(), "abc.def.ghi");
        let cli =
            crate::cli::Cli::try_parse_from(["dwctl", "--token", "", "--tenant", "acme", "day", "state"]).unwrap();
        let err = format!("{:#}", mint_from_options(&cli.global).unwrap_err());
        assert!(err.contains("--sub") && err.contains("--role") && !err.contains("--tenant"), "{err}");
    }

    #[test]
    fn a_token_file_is_read_when_no_token_is_given() {
        let dir = std::env::temp_dir().join(format!("dwctl-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "eyJ.idp.token\n").unwrap();
        let path = file.to_str().unwrap();
        let cli = crate::cli::Cli::try_parse_from(["dwctl", "--token-file", path, "day", "state"]).unwrap();
        assert_eq!(resolve(&cli.global).unwrap(), "eyJ.idp.token");
        let cli = crate::cli::Cli::try_parse_from(["dwctl", "--token", "given", "--token-file", path, "day", "state"])
            .unwrap();
        assert_eq!(resolve(&cli.global).unwrap(), "given", "--token wins over the file");
        std::fs::write(&file, "\n").unwrap();
        let cli = crate::cli::Cli::try_parse_from(["dwctl", "--token-file", path, "day", "state"]).unwrap();
        assert!(format!("{:#}", resolve(&cli.global).unwrap_err()).contains("does not hold one token"));
        let missing = dir.join("missing");
        let cli = crate::cli::Cli::try_parse_from(["dwctl", "--token-file", missing.to_str().unwrap(), "day", "state"])
            .unwrap();
        assert!(format!("{:#}", resolve(&cli.global).unwrap_err()).contains("cannot read the token file"));

        let secret = dir.join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let cli = crate::cli::Cli::try_parse_from([
            "dwctl",
            "--secret-file",
            secret.to_str().unwrap(),
            "--tenant",
            "acme",
            "--sub",
            "ana",
            "--role",
            "agent",
            "day",
            "state",
        ])
        .unwrap();
        let token = resolve(&cli.global).unwrap();
        let verifier = JwtVerifier::new(SECRET.as_bytes()).unwrap();
        assert!(verifier.verify(&token, chrono::Utc::now().timestamp()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
