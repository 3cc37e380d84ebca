//! The RSA public keys a verifier checks signatures with, loaded from `KEYS_DIR` at start and
//! at each reload (`reload`): every `*.pem` file is one key, and its name without `.pem` is the
//! key id.
//!
//! Loading refuses anything doubtful — a missing or empty directory, a file that is not an RSA
//! public key, an unsafe key id — and names the file and the problem, because a verifier that
//! silently lacks a key answers `error` to every task for it: at start the verifier does not
//! start, at a reload it keeps the keys it had.

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use std::collections::BTreeMap;
use std::path::Path;
use wire::KeyInfo;

pub use crate::key_error::{KeyError, MAX_KEY_BITS, MIN_KEY_BITS};
use crate::key_error::{MAX_ID_LEN, PKCS1_TAG, SPKI_TAG};

/// One loaded RSA public key, ready to verify with.
#[derive(Debug)]
pub struct RsaKey {
    id: String,
    key: ParsedPublicKey,
    modulus_len: usize,
}

impl RsaKey {
    /// Parses one PEM public key (SubjectPublicKeyInfo or PKCS#1). `path` only names the
    /// source in errors.
    pub fn from_pem(id: &str, pem_text: &[u8], path: &Path) -> Result<Self, KeyError> {
        let not_pem = |reason: String| KeyError::NotPem {
            path: path.to_owned(),
            reason,
        };
        let blocks = pem::parse_many(pem_text).map_err(|e| not_pem(e.to_string()))?;
        let block = match blocks.as_slice() {
            [] => return Err(not_pem("no -----BEGIN ...----- block found".to_owned())),
            [one] => one,
            more => {
                return Err(not_pem(format!(
                    "{} PEM blocks found; put one key per file",
                    more.len()
                )));
            }
        };
        if block.tag() != SPKI_TAG && block.tag() != PKCS1_TAG {
            let hint = if block.tag().contains("PRIVATE") {
                " (this is a private key: put only public keys in KEYS_DIR, e.g. \
                 `openssl rsa -in key.pem -pubout`)"
            } else {
                ""
            };
            return Err(KeyError::WrongLabel {
                path: path.to_owned(),
                label: block.tag().to_owned(),
                hint,
            });
        }
        let der = block.contents();
        let not_rsa = |detail: String| KeyError::NotRsa {
            path: path.to_owned(),
            detail,
        };
        // Both accept PKCS#1 RSAPublicKey and SubjectPublicKeyInfo DER, and refuse non-RSA keys.
        let public =
            aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|e| not_rsa(e.to_string()))?;
        let modulus = public.modulus();
        let modulus = modulus.big_endian_without_leading_zero();
        let bits = modulus.first().map_or(0, |top| {
            modulus.len() * 8 - usize::try_from(top.leading_zeros()).unwrap_or(0)
        });
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(KeyError::UnsupportedSize {
                path: path.to_owned(),
                bits,
            });
        }
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|e| not_rsa(e.to_string()))?;
        Ok(RsaKey {
            id: id.to_owned(),
            key,
            modulus_len: modulus.len(),
        })
    }

    /// The key id (the file stem).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Modulus length in bytes: the length of every signature this key can have made.
    pub fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// The parsed key for RSASSA-PKCS1-v1_5 / SHA-256 verification.
    pub(crate) fn parsed(&self) -> &ParsedPublicKey {
        &self.key
    }
}

/// Every key of the keys directory, by id.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, RsaKey>,
}

impl KeyRing {
    /// Loads every `*.pem` file of `dir`; other files are skipped (logged at debug level).
    /// Fails on the first file that is not a usable RSA public key, and when there is none.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let entries = std::fs::read_dir(dir).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyError::MissingDir {
                    dir: dir.to_owned(),
                }
            } else {
                KeyError::UnreadableDir {
                    dir: dir.to_owned(),
                    source,
                }
            }
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeyError::UnreadableDir {
                dir: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "pem") {
                paths.push(path);
            } else {
                tracing::debug!(file = %path.display(), "not a *.pem file; ignored");
            }
        }
        // A stable order makes "the first bad file" the same on every start.
        paths.sort();
        let mut ring = KeyRing::default();
        for path in paths {
            let id = key_id(&path)?;
            let text = std::fs::read(&path).map_err(|source| KeyError::UnreadableFile {
                path: path.clone(),
                source,
            })?;
            let key = RsaKey::from_pem(&id, &text, &path)?;
            tracing::debug!(key = %id, bits = key.modulus_len() * 8, file = %path.display(), "key loaded");
            ring.insert(key);
        }
        if ring.keys.is_empty() {
            return Err(KeyError::NoKeys {
                dir: dir.to_owned(),
            });
        }
        Ok(ring)
    }

    /// Adds a key, replacing any with the same id.
    pub fn insert(&mut self, key: RsaKey) {
        self.keys.insert(key.id.clone(), key);
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&RsaKey> {
        self.keys.get(id)
    }

    /// Key ids and sizes, sorted by id, as announced in heartbeats.
    pub fn infos(&self) -> Vec<KeyInfo> {
        self.keys
            .values()
            .map(|k| KeyInfo {
                id: k.id.clone(),
                modulus_len: u32::try_from(k.modulus_len).unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key id a file name gives, when it is a safe name.
fn key_id(path: &Path) -> Result<String, KeyError> {
    let stem = path.file_stem().unwrap_or_default();
    let unsafe_id = || KeyError::UnsafeId {
        path: path.to_owned(),
        id: stem.to_string_lossy().into_owned(),
    };
    let id = stem.to_str().ok_or_else(unsafe_id)?;
    if is_safe_id(id) {
        Ok(id.to_owned())
    } else {
        Err(unsafe_id())
    }
}

/// 1 to 128 ASCII letters, digits, `-`, `_`, `.`, the first a letter or digit.
pub fn is_safe_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::is_safe_id;

    #[test]
    fn safe_ids_are_plain_names() {
        for ok in ["demo", "key-1", "k_2.v3", "A", "2024.rotation"] {
            assert!(is_safe_id(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".hidden",
            "-dash",
            "a b",
            "ключ",
            "a/b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
    }
}
