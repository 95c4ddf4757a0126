//! Shared-secret tokens (`token_file`): an input that has one accepts only
//! senders that present it in the acknowledged handshake
//! (`logrelay-ack/2`, see `codec::ack`); a forward output with one
//! presents it.
//!
//! The token never appears in a log line or a `Debug` print, and is
//! compared in time that does not depend on where it differs.

use std::path::{Path, PathBuf};

/// Longest token: the handshake carries its length in a u16, and a
/// secret longer than this is a wrong file, not a secret.
pub const MAX_TOKEN: usize = 4096;

/// A token read from its file.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The file it came from (safe to print).
    pub path: PathBuf,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, <redacted>)", self.path.display())
    }
}

impl Token {
    /// Read the token from `path`: its content without surrounding
    /// whitespace (a trailing newline is what editors add).
    pub fn load(path: &Path) -> Result<Token, String> {
        let raw =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let secret = raw.trim_ascii().to_vec();
        if secret.is_empty() {
            return Err(format!(
                "{} is empty: write the shared secret in it",
                path.display()
            ));
        }
        if secret.len() > MAX_TOKEN {
            return Err(format!(
                "{} holds {} bytes; a token is at most {MAX_TOKEN}",
                path.display(),
                secret.len()
            ));
        }
        Ok(Token {
            path: path.to_path_buf(),
            secret,
        })
    }

    /// The secret, to send in a handshake.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether `given` is the secret, in time independent of the bytes.
    pub fn matches(&self, given: &[u8]) -> bool {
        let a = &self.secret;
        let mut diff = u8::from(a.len() != given.len());
        for i in 0..a.len().max(given.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = given.get(i).copied().unwrap_or(0);
            diff |= std::hint::black_box(x ^ y);
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_trimmed_compared_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "s3cret\n").unwrap();
        let t = Token::load(&p).unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cret!"));
        assert!(!t.matches(b""));
        assert!(!format!("{t:?}").contains("s3cret"));
        std::fs::write(&p, " \n").unwrap();
        assert!(Token::load(&p).unwrap_err().contains("is empty"));
        assert!(Token::load(&dir.path().join("none"))
            .unwrap_err()
            .contains("cannot read"));
    }
}
