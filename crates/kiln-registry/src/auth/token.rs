//! Bearer tokens of the Docker token flow: JWTs signed with HS256 under a key read from a file.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{Action, AuthError};

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// The HMAC-SHA256 key that signs and verifies tokens.
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<TokenKey, AuthError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(AuthError::Key {
                path: String::new(),
                reason: format!("{} bytes; at least {MIN_KEY_BYTES} are needed", bytes.len()),
            });
        }
        Ok(TokenKey(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// Reads a key file: its content, surrounding whitespace trimmed, is the key.
    pub fn load(path: &Path) -> Result<TokenKey, AuthError> {
        let bytes = fs_err::read(path).map_err(AuthError::Io)?;
        TokenKey::from_bytes(bytes.trim_ascii()).map_err(|e| match e {
            AuthError::Key { reason, .. } => AuthError::Key {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Reads `path`, or if it does not exist writes 32 random bytes (hex) to it with mode 0600 and uses
    /// them. Returns the key and whether it was generated.
    pub fn load_or_generate(path: &Path) -> Result<(TokenKey, bool), AuthError> {
        if path.exists() {
            return Ok((TokenKey::load(path)?, false));
        }
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).map_err(|_| {
            AuthError::Key {
                path: path.display().to_string(),
                reason: "the system random source failed".to_owned(),
            }
        })?;
        let text = hex::encode(secret);
        use fs_err::os::unix::fs::OpenOptionsExt as _;
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(AuthError::Io)?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(AuthError::Io)?;
        Ok((TokenKey::from_bytes(text.as_bytes())?, true))
    }
}

/// One grant of a token: a resource and the actions allowed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `repository` or `registry` (for `registry:catalog:*`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, or `*`.
    pub actions: Vec<String>,
}

/// The claims kiln signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: always `kiln`.
    pub iss: String,
    /// The user, empty for an anonymous token.
    pub sub: String,
    /// The service the token is for.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// What the token allows.
    pub access: Vec<Grant>,
}

impl Claims {
    /// Whether the token allows `action` on repository `name`.
    pub fn allows(&self, name: &str, action: Action) -> bool {
        self.access.iter().any(|g| {
            g.kind == "repository"
                && g.name == name
                && g.actions.iter().any(|a| a == action.as_str() || a == "*")
        })
    }

    /// Whether the token allows listing the catalog.
    pub fn allows_catalog(&self) -> bool {
        self.access
            .iter()
            .any(|g| g.kind == "registry" && g.name == "catalog")
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current time as RFC 3339 (UTC), for `issued_at`.
pub(crate) fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// The signature does not verify (tampered, or signed with another key).
    #[error("token signature is invalid")]
    Signature,
    /// Past its expiry.
    #[error("token expired at {0}")]
    Expired(u64),
    /// Issued for another service.
    #[error("token is for service `{0}`")]
    Audience(String),
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl TokenKey {
    /// Signs claims for `user` (None: anonymous) with these grants, valid for `ttl` from now.
    pub fn issue(&self, service: &str, user: Option<&str>, access: Vec<Grant>, ttl: Duration) -> String {
        let iat = now();
        let claims = Claims {
            iss: "kiln".to_owned(),
            sub: user.unwrap_or_default().to_owned(),
            aud: service.to_owned(),
            exp: iat + ttl.as_secs(),
            nbf: iat.saturating_sub(10),
            iat,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
        };
        // Serializing these plain fields cannot fail; an empty object would only make a useless token.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(payload));
        let signature = hmac::sign(&self.0, signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.as_ref()))
    }

    /// Verifies a token's signature, expiry and audience; returns its claims.
    pub fn verify(&self, token: &str, service: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        hmac::verify(&self.0, signing_input.as_bytes(), &signature).map_err(|_| TokenError::Signature)?;
        let header: serde_json::Value = B64
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::Malformed);
        }
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let t = now();
        if claims.exp <= t || claims.nbf > t + 60 {
            return Err(TokenError::Expired(claims.exp));
        }
        if claims.aud != service {
            return Err(TokenError::Audience(claims.aud));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, actions: &[&str]) -> Grant {
        Grant {
            kind: "repository".to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_other_keys_and_services() {
        let key = TokenKey::from_bytes(&[7u8; 32]).unwrap();
        let token = key.issue(
            "kiln",
            Some("ci"),
            vec![grant("a/b", &["pull"])],
            Duration::from_secs(60),
        );
        let claims = key.verify(&token, "kiln").unwrap();
        assert_eq!(claims.sub, "ci");
        assert!(claims.allows("a/b", Action::Pull));
        assert!(!claims.allows("a/b", Action::Push));
        assert!(!claims.allows("a/c", Action::Pull));
        assert_eq!(
            key.verify(&token, "other"),
            Err(TokenError::Audience("kiln".to_owned()))
        );
        let other = TokenKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(other.verify(&token, "kiln"), Err(TokenError::Signature));
        // Swap the payload for one granting push: the signature no longer matches.
        let forged = key.issue(
            "kiln",
            Some("ci"),
            vec![grant("a/b", &["push"])],
            Duration::from_secs(60),
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = forged.split('.').nth(1).unwrap();
        assert_eq!(key.verify(&parts.join("."), "kiln"), Err(TokenError::Signature));
        assert_eq!(key.verify("a.b", "kiln"), Err(TokenError::Malformed));
        let expired = key.issue("kiln", None, vec![], Duration::ZERO);
        assert!(matches!(
            key.verify(&expired, "kiln"),
            Err(TokenError::Expired(_))
        ));
        assert!(TokenKey::from_bytes(b"short").is_err());
    }

    #[test]
    fn generated_keys_are_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let (a, generated) = TokenKey::load_or_generate(&path).unwrap();
        assert!(generated);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, generated) = TokenKey::load_or_generate(&path).unwrap();
        assert!(!generated);
        let token = a.issue("s", None, vec![], Duration::from_secs(60));
        assert!(b.verify(&token, "s").is_ok());
    }
}
