//! The shared secrets behind the HMAC-SHA-256 tag (design §7), and the key file they are read
//! from. A file may hold several keys so that a key can be rotated without a moment in which
//! two processes disagree: the first key tags what a process sends, and a message tagged with
//! any of its keys is accepted.
//!
//! The file format, chosen so that every key file written before rotation existed reads as it
//! did:
//! - A file whose content, surrounding white space aside, is **one line** is **one key**: those
//!   bytes exactly, whatever they are (binary included).
//! - A file of **several lines** that is UTF-8 text is a **key list**: each line, surrounding
//!   white space aside, is one key, in order; empty lines and lines starting with `#` are
//!   skipped.
//! - A file of several lines that is not UTF-8 (raw random bytes that happen to hold a newline
//!   byte) is one key, as before.
//!
//! Every key must be at least [`MIN_SHARED_KEY_LEN`] bytes, and a file must hold one.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// The shortest shared key accepted, in bytes.
pub const MIN_SHARED_KEY_LEN: usize = 16;

/// The tag a message carries: HMAC-SHA-256, 32 bytes.
pub(crate) type Tag = [u8; 32];

/// One or more shared secrets: the first tags every message, any of them verifies one.
#[derive(Clone)]
pub struct SharedKey {
    /// Never empty; the first is the one that tags.
    keys: Vec<HmacSha256>,
}

/// Why a shared key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedKeyError {
    /// The file could not be read.
    #[error("cannot read shared key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds nothing but white space (and comments, in a key list).
    #[error("shared key file {path} holds no key")]
    Empty {
        /// The file.
        path: String,
    },
    /// A key is too short to be a secret.
    #[error(
        "the shared key on line {line} of {path} is {len} bytes; \
         at least {MIN_SHARED_KEY_LEN} are required"
    )]
    TooShort {
        /// The file.
        path: String,
        /// The line the key is on, from 1.
        line: usize,
        /// Its length after trimming white space.
        len: usize,
    },
}

impl SharedKey {
    /// Reads the keys of a key file (the format is in this module's documentation).
    pub fn from_file(path: &Path) -> Result<Self, SharedKeyError> {
        let file = || path.display().to_string();
        let raw = std::fs::read(path).map_err(|source| SharedKeyError::Read {
            path: file(),
            source,
        })?;
        let mut keys = Vec::new();
        for (line, key) in keys_in(&raw) {
            let key = Self::from_bytes(key).map_err(|len| SharedKeyError::TooShort {
                path: file(),
                line,
                len,
            })?;
            keys.extend(key.keys);
        }
        if keys.is_empty() {
            return Err(SharedKeyError::Empty { path: file() });
        }
        Ok(SharedKey { keys })
    }

    /// Makes a single key from raw bytes; `Err` carries the length when it is too short.
    pub fn from_bytes(key: &[u8]) -> Result<Self, usize> {
        if key.len() < MIN_SHARED_KEY_LEN {
            return Err(key.len());
        }
        HmacSha256::new_from_slice(key)
            .map(|key| SharedKey { keys: vec![key] })
            .map_err(|_| key.len())
    }

    /// How many keys verify; the first of them tags.
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// The tag of a message with this topic and envelope, made with the first key.
    pub(crate) fn tag(&self, topic: &[u8], envelope: &[u8]) -> Tag {
        mac(&self.keys[0], topic, envelope)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `tag` is the tag of this topic and envelope under any of the keys.
    pub(crate) fn verifies(&self, topic: &[u8], envelope: &[u8], tag: &[u8]) -> bool {
        self.keys
            .iter()
            .any(|key| mac(key, topic, envelope).verify_slice(tag).is_ok())
    }
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedKey({} keys)", self.keys.len())
    }
}

fn mac(key: &HmacSha256, topic: &[u8], envelope: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    // The topic's length goes first so no split of topic|envelope can collide with another.
    mac.update(&(topic.len() as u64).to_be_bytes());
    mac.update(topic);
    mac.update(envelope);
    mac
}

/// The keys a key file's content holds, each with the line it is on.
fn keys_in(raw: &[u8]) -> Vec<(usize, &[u8])> {
    let whole = raw.trim_ascii();
    let list = std::str::from_utf8(raw)
        .ok()
        .filter(|_| whole.contains(&b'\n'));
    match list {
        Some(text) => text
            .lines()
            .enumerate()
            .map(|(at, line)| (at + 1, line.trim_ascii()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .map(|(at, line)| (at, line.as_bytes()))
            .collect(),
        None if whole.is_empty() => Vec::new(),
        // The line a one-key file's key starts on, blank lines before it counted.
        None => {
            let leading = raw.len() - raw.trim_ascii_start().len();
            let line = 1 + raw[..leading].iter().filter(|&&b| b == b'\n').count();
            vec![(line, whole)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"the old key, 16+ bytes";
    const NEW: &[u8] = b"the new key, 16+ bytes";

    /// A key file holding `content`, in a directory that lives as long as the result.
    fn key_file(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("shared.key");
        std::fs::write(&path, content).expect("the key file is written");
        (dir, path)
    }

    fn read(content: &[u8]) -> Result<SharedKey, SharedKeyError> {
        let (_dir, path) = key_file(content);
        SharedKey::from_file(&path)
    }

    fn tag_of(key: &SharedKey) -> Tag {
        key.tag(b"downcase", b"envelope")
    }

    fn single(key: &[u8]) -> SharedKey {
        SharedKey::from_bytes(key).expect("a long enough key")
    }

    #[test]
    fn a_one_line_file_is_one_key_with_or_without_its_newline() {
        for content in [
            &b"0123456789abcdef"[..],
            b"0123456789abcdef\n",
            b"  0123456789abcdef \r\n\n",
        ] {
            let key = read(content).expect("a usable key");
            assert_eq!(key.count(), 1);
            assert_eq!(tag_of(&key), tag_of(&single(b"0123456789abcdef")));
        }
    }

    #[test]
    fn a_binary_key_stays_one_key_even_with_newline_bytes_in_it() {
        let binary: Vec<u8> = (0u8..=255).rev().collect();
        let key = read(&binary).expect("a usable key");
        assert_eq!(key.count(), 1);
        assert_eq!(tag_of(&key), tag_of(&single(binary.trim_ascii())));
    }

    #[test]
    fn a_one_line_file_starting_with_a_hash_is_still_that_key() {
        let key = read(b"#0123456789abcdef\n").expect("a usable key");
        assert_eq!(tag_of(&key), tag_of(&single(b"#0123456789abcdef")));
    }

    #[test]
    fn a_text_file_of_several_lines_is_a_key_list_whose_first_key_tags() {
        let content = [
            &b"# rotation: new first, old until every process has the new one\n"[..],
            NEW,
            b"\r\n\n   ",
            OLD,
            b"  \n",
        ]
        .concat();
        let keys = read(&content).expect("usable keys");
        assert_eq!(keys.count(), 2);
        assert_eq!(tag_of(&keys), tag_of(&single(NEW)));
    }

    #[test]
    fn keys_new_and_old_accept_tags_of_either_and_tag_with_new() {
        let (_dir, path) = key_file(&[NEW, b"\n", OLD, b"\n"].concat());
        let both = SharedKey::from_file(&path).expect("usable keys");
        for sender in [single(NEW), single(OLD)] {
            assert!(both.verifies(b"downcase", b"envelope", &tag_of(&sender)));
        }
        assert!(single(NEW).verifies(b"downcase", b"envelope", &tag_of(&both)));
    }

    #[test]
    fn only_the_old_key_rejects_tags_of_the_new_one() {
        let (_dir, path) = key_file(&[OLD, b"\n"].concat());
        let old = SharedKey::from_file(&path).expect("a usable key");
        let new_tag = tag_of(&single(NEW));
        assert!(!old.verifies(b"downcase", b"envelope", &new_tag));
        assert!(old.verifies(b"downcase", b"envelope", &tag_of(&single(OLD))));
    }

    #[test]
    fn a_tag_verifies_only_its_own_topic_and_envelope() {
        let key = single(OLD);
        let tag = tag_of(&key);
        assert!(!key.verifies(b"downcas", b"eenvelope", &tag));
        assert!(!key.verifies(b"downcase", b"envelope", &tag[..31]));
        assert!(!key.verifies(b"downcase", b"envelope", &[]));
    }

    #[test]
    fn an_empty_file_is_refused_naming_the_file() {
        for content in [&b""[..], b" \n\n", b"# the keys:\n# (none yet)\n"] {
            let (_dir, path) = key_file(content);
            let err = SharedKey::from_file(&path).expect_err("no key");
            assert!(matches!(err, SharedKeyError::Empty { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("holds no key"), "{message}");
        }
    }

    #[test]
    fn a_short_key_is_refused_naming_the_file_and_its_line() {
        assert_eq!(SharedKey::from_bytes(b"short").unwrap_err(), 5);
        let (_dir, path) = key_file(b"tiny\n");
        let err = SharedKey::from_file(&path).expect_err("too short");
        assert!(
            matches!(
                err,
                SharedKeyError::TooShort {
                    line: 1,
                    len: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("4 bytes; at least 16"), "{message}");
        let (_dir, path) = key_file(&[NEW, b"\n\nshort key\n"].concat());
        assert!(matches!(
            SharedKey::from_file(&path),
            Err(SharedKeyError::TooShort {
                line: 3,
                len: 9,
                ..
            })
        ));
    }

    #[test]
    fn an_unreadable_path_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for path in [dir.path().join("missing.key"), dir.path().to_owned()] {
            let err = SharedKey::from_file(&path).expect_err("unreadable");
            assert!(matches!(err, SharedKeyError::Read { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[test]
    fn the_debug_form_shows_no_secret() {
        let (_dir, path) = key_file(&[NEW, b"\n", OLD].concat());
        let keys = SharedKey::from_file(&path).expect("usable keys");
        assert_eq!(format!("{keys:?}"), "SharedKey(2 keys)");
    }
}
