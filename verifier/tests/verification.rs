//! Verdicts of the verification path the worker pool runs: signatures made by the `openssl`
//! command line and by RustCrypto `rsa` are valid; tampering in any way makes them invalid.

use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use test_support::openssl::KeyFolder;
use verifier::{KeyRing, verify_task};
use wire::{SignatureStatus, Verdict, VerifyTask};

fn task(key: &str, document: &[u8], signature: Vec<u8>) -> VerifyTask {
    VerifyTask {
        task_id: 42,
        key: key.to_owned(),
        sha256: wire::sha256(document),
        signature,
        attempt: 1,
    }
}

fn check(ring: &KeyRing, key: &str, document: &[u8], signature: Vec<u8>) -> Verdict {
    let result = verify_task(ring, &task(key, document, signature));
    assert_eq!(result.task_id, 42);
    result
}

/// Signs with RustCrypto `rsa` (RSASSA-PKCS1-v1_5, SHA-256), using an openssl-made key.
fn rsa_crate_sign(private_pem: &std::path::Path, document: &[u8]) -> Vec<u8> {
    let pem = std::fs::read_to_string(private_pem).expect("private key readable");
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("openssl writes PKCS#8");
    let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(private);
    signer.sign(document).to_vec()
}

#[test]
fn an_openssl_signature_is_valid_with_the_spki_and_the_pkcs1_form_of_the_key() {
    let folder = KeyFolder::new();
    let private = folder.private_key("signer", 2048);
    folder.publish_spki(&private, "spki");
    folder.publish_pkcs1(&private, "pkcs1");
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");
    let document = "Hello, wörld!\n".as_bytes();
    let signature = folder.sign(&private, document);

    for key in ["spki", "pkcs1"] {
        let result = check(&ring, key, document, signature.clone());
        assert_eq!(result.status, SignatureStatus::Valid, "{key}: {result:?}");
        assert_eq!(result.reason, None);
    }
}

#[test]
fn an_rsa_crate_signature_is_valid_and_so_is_its_pkcs1_public_key_export() {
    let folder = KeyFolder::new();
    let private_path = folder.private_key("rustcrypto", 2048);
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(
        &std::fs::read_to_string(&private_path).expect("readable"),
    )
    .expect("PKCS#8");
    let public_pem = rsa::RsaPublicKey::from(&private)
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .expect("PKCS#1 PEM");
    folder.write_key_file("rustcrypto.pem", public_pem);
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");
    let document = b"\x00binary\xffdocument";

    let result = check(
        &ring,
        "rustcrypto",
        document,
        rsa_crate_sign(&private_path, document),
    );

    assert_eq!(result.status, SignatureStatus::Valid, "{result:?}");
}

#[test]
fn an_empty_document_can_be_signed_and_verified() {
    let folder = KeyFolder::new();
    let private = folder.key("demo");
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");

    let result = check(&ring, "demo", b"", folder.sign(&private, b""));

    assert_eq!(result.status, SignatureStatus::Valid, "{result:?}");
}

#[test]
fn a_tampered_document_is_invalid() {
    let folder = KeyFolder::new();
    let private = folder.key("demo");
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");
    let signature = folder.sign(&private, b"pay 10 EUR");

    let result = check(&ring, "demo", b"pay 99 EUR", signature);

    assert_eq!(result.status, SignatureStatus::Invalid);
    assert!(result.reason.expect("a reason").contains("does not match"));
}

#[test]
fn a_flipped_bit_in_the_signature_is_invalid() {
    let folder = KeyFolder::new();
    let private = folder.key("demo");
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");
    let mut signature = folder.sign(&private, b"text");
    signature[100] ^= 0x01;

    let result = check(&ring, "demo", b"text", signature);

    assert_eq!(result.status, SignatureStatus::Invalid);
}

#[test]
fn a_signature_from_another_key_is_invalid() {
    let folder = KeyFolder::new();
    folder.key("alice");
    let mallory = folder.private_key("mallory", 2048);
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");
    let document = b"I, alice, agree";

    let result = check(&ring, "alice", document, folder.sign(&mallory, document));

    assert_eq!(result.status, SignatureStatus::Invalid);
}

#[test]
fn a_truncated_signature_is_invalid_and_the_reason_names_the_lengths() {
    let folder = KeyFolder::new();
    let private = folder.key("demo");
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");
    let mut signature = folder.sign(&private, b"text");
    signature.truncate(255);

    let result = check(&ring, "demo", b"text", signature);

    assert_eq!(result.status, SignatureStatus::Invalid);
    let reason = result.reason.expect("a reason");
    assert!(
        reason.contains("255 bytes") && reason.contains("256-byte"),
        "{reason}"
    );
}

#[test]
fn a_signature_for_an_unknown_key_is_an_error() {
    let folder = KeyFolder::new();
    let private = folder.key("demo");
    let ring = KeyRing::load(&folder.keys_dir()).expect("keys load");

    let result = check(&ring, "other", b"text", folder.sign(&private, b"text"));

    assert_eq!(result.status, SignatureStatus::Error);
    assert!(result.reason.expect("a reason").contains("unknown key"));
}
