//! Roles by bearer token. The public reads headers, entries without personal data, proofs,
//! tiles and metrics; an `auditor` token also reads personal data, exports it, and redacts.
//! Tokens are configured as SHA-256 digests (socai.toml `[[http.tokens]]`), never in the clear.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Personal data, exports with personal data, redaction.
    Auditor,
}

/// One configured token: who holds it (recorded as `redacted_by`), its role, its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token text.
    pub sha256: String,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Public,
    Token { name: String, role: Role },
}

/// The SHA-256 hex digest a token is configured by.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<TokenConfig>,
}

impl Tokens {
    /// Checks every digest is 64 lowercase hex digits and every name is unique.
    pub fn new(tokens: Vec<TokenConfig>) -> Result<Tokens, String> {
        for (i, t) in tokens.iter().enumerate() {
            if t.sha256.len() != 64
                || !t
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(format!(
                    "[[http.tokens]] {:?}: sha256 must be 64 lowercase hex digits (make one with `socai token new`)",
                    t.name
                ));
            }
            if t.name.trim().is_empty()
                || t.name.len() > 128
                || t.name.chars().any(char::is_control)
            {
                return Err(format!(
                    "[[http.tokens]] #{}: name must be 1 to 128 printable characters",
                    i + 1
                ));
            }
            if tokens[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("[[http.tokens]] name {:?} is used twice", t.name));
            }
        }
        Ok(Tokens { tokens })
    }

    /// The caller a request's `Authorization` header names. A header that is present but does
    /// not carry a known bearer token is refused (never treated as public).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Public);
        };
        let unauthorized = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why);
        let text = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let digest = token_digest(token);
        self.tokens
            .iter()
            .find(|t| t.sha256 == digest)
            .map(|t| Caller::Token {
                name: t.name.clone(),
                role: t.role,
            })
            .ok_or_else(|| unauthorized("the bearer token is not one this ledger knows"))
    }

    /// The caller, who must hold `role` to do `what`.
    pub fn require(&self, headers: &HeaderMap, role: Role, what: &str) -> Result<String, ApiError> {
        match self.caller(headers)? {
            Caller::Token { name, role: r } if r == role => Ok(name),
            Caller::Token { name, .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token {name:?} may not {what}: it needs the {role:?} role"),
            )),
            Caller::Public => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("{what} needs an auditor's bearer token (Authorization: Bearer <token>)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_roles() {
        let tokens = Tokens::new(vec![TokenConfig {
            name: "inspector-7".into(),
            role: Role::Auditor,
            sha256: token_digest("s3cret"),
        }])
        .unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(tokens.caller(&h).unwrap(), Caller::Public);
        assert_eq!(
            tokens
                .require(&h, Role::Auditor, "read personal data")
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(
            tokens.require(&h, Role::Auditor, "x").unwrap(),
            "inspector-7"
        );
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(
            tokens.caller(&h).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(tokens.caller(&h).is_err());
        let bad = TokenConfig {
            name: "x".into(),
            role: Role::Auditor,
            sha256: "ABC".into(),
        };
        assert!(Tokens::new(vec![bad]).is_err());
    }
}
