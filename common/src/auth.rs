//! Authentication shared by every listener: users who log in with a Flight
//! SQL `Handshake` (HTTP Basic credentials) and get a bearer token, static
//! bearer tokens from the configuration, and the check every call makes.
//!
//! With no users and no tokens configured, authentication is off, which is
//! allowed only on loopback listeners unless `--insecure-no-auth` is given.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::RwLock;

use base64::Engine;

/// Most tokens issued by logins kept at once; past it the oldest expires.
pub const MAX_SESSIONS: usize = 100_000;

/// Authentication flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Users who may log in (Flight SQL Handshake with Basic credentials), as
    /// name:password pairs separated by commas.
    #[arg(
        long,
        env = "CLICKLAKE_AUTH_USERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_users: Vec<String>,

    /// Bearer tokens accepted on every call (ingest producers, services), separated by commas.
    #[arg(
        long,
        env = "CLICKLAKE_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<String>,

    /// Allow serving without authentication on an address other than loopback.
    #[arg(long, env = "CLICKLAKE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Serve gRPC (ingest and Flight SQL) over TLS with this certificate
    /// chain (PEM); needs --tls-key.
    #[arg(long, env = "CLICKLAKE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "CLICKLAKE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

/// Why a call or a login was refused. The text goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "authentication required: send `authorization: Bearer <token>` (log in with a Flight SQL handshake to get one)"
    )]
    Missing,
    #[error("malformed authorization header: {0}")]
    Malformed(String),
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("unknown or expired bearer token")]
    BadToken,
}

/// Configuration error of the auth flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("--auth-users entry {0:?} is not name:password")]
    BadUser(String),
    #[error(
        "{addr} is not a loopback address and no --auth-users or --auth-tokens are set; configure authentication or pass --insecure-no-auth"
    )]
    OpenNonLoopback { addr: SocketAddr },
}

/// Users, tokens and issued sessions.
#[derive(Debug, Default)]
pub struct Auth {
    users: HashMap<String, String>,
    tokens: HashSet<String>,
    sessions: RwLock<(HashSet<String>, VecDeque<String>)>,
    insecure: bool,
}

impl Auth {
    /// Validate the flags.
    pub fn from_args(args: &AuthArgs) -> Result<Self, AuthConfigError> {
        let mut users = HashMap::new();
        for entry in args.auth_users.iter().filter(|e| !e.is_empty()) {
            match entry.split_once(':') {
                Some((name, password)) if !name.is_empty() && !password.is_empty() => {
                    users.insert(name.to_string(), password.to_string());
                }
                _ => return Err(AuthConfigError::BadUser(entry.clone())),
            }
        }
        Ok(Self {
            users,
            tokens: args
                .auth_tokens
                .iter()
                .filter(|t| !t.is_empty())
                .cloned()
                .collect(),
            sessions: RwLock::default(),
            insecure: args.insecure_no_auth,
        })
    }

    /// Whether calls must authenticate.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// Refuse to listen on a non-loopback address without authentication.
    pub fn check_listener(&self, addr: SocketAddr) -> Result<(), AuthConfigError> {
        if self.enabled() || self.insecure || addr.ip().is_loopback() {
            Ok(())
        } else {
            Err(AuthConfigError::OpenNonLoopback { addr })
        }
    }

    /// Log in with an `authorization: Basic ...` header; returns a new bearer token.
    pub fn login(&self, authorization: Option<&str>) -> Result<String, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let encoded = value
            .strip_prefix("Basic ")
            .ok_or_else(|| AuthError::Malformed("a login needs Basic credentials".into()))?;
        // Clients differ on padding (Go's Flight client sends none).
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        let encoded = encoded.trim();
        let decoded = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')))
            .map_err(|_| AuthError::Malformed("Basic credentials are not base64".into()))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| AuthError::Malformed("Basic credentials are not UTF-8".into()))?;
        let (name, password) = text.split_once(':').ok_or_else(|| {
            AuthError::Malformed("Basic credentials are not name:password".into())
        })?;
        match self.users.get(name) {
            Some(expected) if constant_time_eq(expected.as_bytes(), password.as_bytes()) => {}
            _ => return Err(AuthError::BadCredentials),
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *sessions;
        while set.len() >= MAX_SESSIONS {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            set.remove(&oldest);
        }
        set.insert(token.clone());
        order.push_back(token.clone());
        Ok(token)
    }

    /// Check an `authorization: Bearer ...` header (always fine when auth is off).
    pub fn check(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| AuthError::Malformed("expected `Bearer <token>`".into()))?
            .trim();
        let known = self
            .tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
            || self
                .sessions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .contains(token);
        if known {
            Ok(())
        } else {
            Err(AuthError::BadToken)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::from_args(&AuthArgs {
            auth_users: vec!["analyst:s3cret".into()],
            auth_tokens: vec!["static-token".into()],
            ..Default::default()
        })
        .expect("valid flags")
    }

    #[test]
    fn login_issues_a_token_that_then_passes() {
        let a = auth();
        // base64("analyst:s3cret") = YW5hbHlzdDpzM2NyZXQ=
        let token = a.login(Some("Basic YW5hbHlzdDpzM2NyZXQ=")).expect("login");
        assert_eq!(a.check(Some(&format!("Bearer {token}"))), Ok(()));
        assert_eq!(a.check(Some("Bearer static-token")), Ok(()));
        // Without padding, as Go clients send it.
        assert!(a.login(Some("Basic YW5hbHlzdDpzM2NyZXQ")).is_ok());
        // base64("analyst:wrong") = YW5hbHlzdDp3cm9uZw==
        assert_eq!(
            a.login(Some("Basic YW5hbHlzdDp3cm9uZw==")),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(a.check(Some("Bearer nope")), Err(AuthError::BadToken));
        assert_eq!(a.check(None), Err(AuthError::Missing));
    }

    #[test]
    fn open_listeners_only_on_loopback() {
        let open = Auth::default();
        assert!(
            open.check_listener("127.0.0.1:1".parse().expect("addr"))
                .is_ok()
        );
        assert!(
            open.check_listener("0.0.0.0:1".parse().expect("addr"))
                .is_err()
        );
        assert!(
            auth()
                .check_listener("0.0.0.0:1".parse().expect("addr"))
                .is_ok()
        );
        assert_eq!(
            Auth::from_args(&AuthArgs {
                auth_users: vec!["nopassword".into()],
                ..Default::default()
            })
            .err(),
            Some(AuthConfigError::BadUser("nopassword".into()))
        );
    }
}
