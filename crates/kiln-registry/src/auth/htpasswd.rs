//! Users from an htpasswd file, bcrypt hashes only (`htpasswd -B`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use kiln_oci::{Algorithm, Digest};

use super::AuthError;

/// The users of an htpasswd file. Successful checks are remembered (as a hash of the password), so a
/// client sending Basic credentials on every request pays bcrypt once.
#[derive(Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<String, Digest>>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a hash that is not bcrypt looks like, for the error message.
fn hash_kind(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "an MD5 (apr1)"
    } else if hash.starts_with("{SHA}") {
        "a SHA-1"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "a SHA-crypt"
    } else if hash.len() == 13 {
        "a DES crypt"
    } else {
        "a plain-text or unknown"
    }
}

impl Htpasswd {
    /// Reads `user:hash` lines (blank lines and `#` comments skipped). Any hash that is not bcrypt
    /// (`$2y$`, `$2b$`, `$2a$`) is refused, naming its line.
    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = fs_err::read_to_string(path).map_err(AuthError::Io)?;
        Htpasswd::parse(&text, path)
    }

    /// Parses htpasswd text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, AuthError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| AuthError::Htpasswd {
                path: path.display().to_string(),
                line: i + 1,
                reason,
            };
            let Some((user, hash)) = line.split_once(':') else {
                return Err(bad("expected `user:hash`".to_owned()));
            };
            if user.is_empty() {
                return Err(bad("empty user name".to_owned()));
            }
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(bad(format!(
                    "user `{user}` has {} hash; kiln accepts bcrypt only (make it with `htpasswd -B`)",
                    hash_kind(hash)
                )));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(bad(format!("user `{user}` is listed twice")));
            }
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Runs bcrypt (milliseconds) unless this pair was verified before.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let fingerprint = Algorithm::Sha256.digest(format!("{hash}\0{password}").as_bytes());
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(user) == Some(&fingerprint) {
            return true;
        }
        drop(cache);
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            cache.insert(user.to_owned(), fingerprint);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_only_and_errors_name_the_line() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\n\nci:{hash}\n"), Path::new("f")).unwrap();
        assert!(h.verify("ci", "secret"));
        assert!(h.verify("ci", "secret"), "cached");
        assert!(!h.verify("ci", "wrong"));
        assert!(!h.verify("nobody", "secret"));
        for (line, kind) in [
            ("a:$apr1$xyz$abc", "MD5"),
            ("b:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "SHA-1"),
            ("c:plain", "plain-text"),
        ] {
            let e = Htpasswd::parse(&format!("ci:{hash}\n{line}\n"), Path::new("users"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("users line 2") && e.contains(kind) && e.contains("bcrypt"),
                "{e}"
            );
        }
        assert!(Htpasswd::parse("nocolon\n", Path::new("f")).is_err());
    }
}
