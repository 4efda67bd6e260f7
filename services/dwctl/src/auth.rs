//! Tokens: the one given, or one minted from the global options (`dwctl token` prints one).

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
    if opts.secret.is_none() {
        missing.push("--secret (DW_JWT_SECRET)");
    }
    match (&opts.secret, &opts.tenant, &opts.sub) {
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

/// The token for an RPC: --token (DW_TOKEN) when given, else one minted from the options.
pub fn resolve(opts: &GlobalOpts) -> Result<String> {
    if let Some(token) = opts.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        return Ok(token.to_owned());
    }
    mint_from_options(opts).context("no token: pass --token (DW_TOKEN), or --tenant, --sub, --role and --secret")
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
}
