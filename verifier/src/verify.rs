//! The verdict on one task: RSASSA-PKCS1-v1_5 with SHA-256, the scheme
//! `openssl dgst -sha256 -sign key.pem` produces. [`verify_task`] is what the worker pool runs
//! for every task; it is pure CPU work and never blocks on anything else.

use crate::keys::KeyRing;
use aws_lc_rs::digest::{Digest, SHA256};
use wire::{SignatureStatus, Verdict, VerifyTask};

/// Longest piece of a caller-supplied key id quoted back in a reason.
const MAX_QUOTED_ID: usize = 64;

/// Checks the task's signature against its document's digest with the named key.
///
/// - `valid`: the signature matches.
/// - `invalid` with a reason: it does not match, or its length is not the key's modulus length.
/// - `error` with a reason: this verifier has no key with that id.
pub fn verify_task(keys: &KeyRing, task: &VerifyTask) -> Verdict {
    let (status, reason) = match keys.get(&task.key) {
        None => (
            SignatureStatus::Error,
            Some(format!("unknown key {:?}", quoted(&task.key))),
        ),
        Some(key) if task.signature.len() != key.modulus_len() => (
            SignatureStatus::Invalid,
            Some(format!(
                "signature is {} bytes; key {:?} makes {}-byte signatures",
                task.signature.len(),
                key.id(),
                key.modulus_len()
            )),
        ),
        Some(key) => match Digest::import_less_safe(&task.sha256, &SHA256) {
            // The digest comes from the publisher, which computed it: a wrong length is its
            // error, not the signer's.
            Err(_) => (
                SignatureStatus::Error,
                Some(format!(
                    "the task's digest is {} bytes, not a SHA-256 digest",
                    task.sha256.len()
                )),
            ),
            Ok(digest) => match key.parsed().verify_digest_sig(&digest, &task.signature) {
                Ok(()) => (SignatureStatus::Valid, None),
                Err(_) => (
                    SignatureStatus::Invalid,
                    Some("signature does not match the document and key".to_owned()),
                ),
            },
        },
    };
    Verdict {
        task_id: task.task_id,
        status,
        reason,
    }
}

/// At most [`MAX_QUOTED_ID`] characters of an untrusted id.
fn quoted(id: &str) -> String {
    match id.char_indices().nth(MAX_QUOTED_ID) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_an_error_and_a_long_id_is_not_echoed_whole() {
        let keys = KeyRing::default();
        let task = VerifyTask {
            task_id: 3,
            key: "x".repeat(10_000),
            sha256: wire::sha256(b"doc"),
            signature: vec![0; 256],
            attempt: 1,
        };
        let result = verify_task(&keys, &task);
        assert_eq!(result.task_id, 3);
        assert_eq!(result.status, SignatureStatus::Error);
        let reason = result.reason.expect("a reason");
        assert!(reason.starts_with("unknown key"), "{reason}");
        assert!(reason.len() < 100, "{reason}");
    }
}
