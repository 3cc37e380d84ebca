//! Loading KEYS_DIR: both PEM forms of RSA public keys load; anything doubtful stops the start
//! with an error that names the file and the problem.

use std::ffi::OsStr;
use test_support::openssl::{KeyFolder, openssl};
use verifier::{KeyError, KeyRing};

#[test]
fn spki_and_pkcs1_public_keys_both_load_under_their_file_stem() {
    let folder = KeyFolder::new();
    let first = folder.private_key("first", 2048);
    let second = folder.private_key("second", 3072);
    folder.publish_spki(&first, "spki-key");
    folder.publish_pkcs1(&second, "pkcs1_key.v2");

    let ring = KeyRing::load(&folder.keys_dir()).expect("both keys load");

    assert_eq!(ring.len(), 2);
    let infos = ring.infos();
    assert_eq!(infos[0].id, "pkcs1_key.v2");
    assert_eq!(infos[0].modulus_len, 384);
    assert_eq!(infos[1].id, "spki-key");
    assert_eq!(infos[1].modulus_len, 256);
}

#[test]
fn files_that_are_not_pem_files_are_ignored() {
    let folder = KeyFolder::new();
    folder.key("demo");
    folder.write_key_file("README.txt", "not a key");
    folder.write_key_file("demo.pem.bak", "garbage");

    let ring = KeyRing::load(&folder.keys_dir()).expect("the .pem key loads");

    assert_eq!(ring.len(), 1);
    assert!(ring.get("demo").is_some());
}

#[test]
fn a_garbage_pem_file_is_refused_naming_the_file() {
    let folder = KeyFolder::new();
    folder.key("good");
    folder.write_key_file("broken.pem", "this is not a key\n");

    let error = KeyRing::load(&folder.keys_dir()).expect_err("garbage is refused");

    assert!(matches!(error, KeyError::NotPem { .. }), "{error:?}");
    assert!(error.to_string().contains("broken.pem"), "{error}");
}

#[test]
fn corrupt_key_data_inside_valid_pem_is_refused() {
    let folder = KeyFolder::new();
    folder.write_key_file(
        "corrupt.pem",
        "-----BEGIN PUBLIC KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PUBLIC KEY-----\n",
    );

    let error = KeyRing::load(&folder.keys_dir()).expect_err("corrupt DER is refused");

    assert!(matches!(error, KeyError::NotRsa { .. }), "{error:?}");
    assert!(error.to_string().contains("corrupt.pem"), "{error}");
}

#[test]
fn an_ec_public_key_is_refused_as_not_rsa() {
    let folder = KeyFolder::new();
    let private = folder.scratch("ec.pem");
    openssl([
        OsStr::new("genpkey"),
        OsStr::new("-algorithm"),
        OsStr::new("EC"),
        OsStr::new("-pkeyopt"),
        OsStr::new("ec_paramgen_curve:P-256"),
        OsStr::new("-out"),
        private.as_os_str(),
    ]);
    let public = folder.keys_dir().join("ec-key.pem");
    openssl([
        OsStr::new("pkey"),
        OsStr::new("-in"),
        private.as_os_str(),
        OsStr::new("-pubout"),
        OsStr::new("-out"),
        public.as_os_str(),
    ]);

    let error = KeyRing::load(&folder.keys_dir()).expect_err("EC keys are refused");

    assert!(matches!(error, KeyError::NotRsa { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("ec-key.pem"), "{message}");
    assert!(message.contains("not a valid RSA public key"), "{message}");
}

#[test]
fn a_private_key_is_refused_with_advice() {
    let folder = KeyFolder::new();
    let private = folder.private_key("leaked", 2048);
    std::fs::copy(&private, folder.keys_dir().join("leaked.pem")).expect("copied");

    let error = KeyRing::load(&folder.keys_dir()).expect_err("private keys are refused");

    assert!(matches!(error, KeyError::WrongLabel { .. }), "{error:?}");
    assert!(error.to_string().contains("-pubout"), "{error}");
}

#[test]
fn a_key_shorter_than_2048_bits_is_refused() {
    let folder = KeyFolder::new();
    let private = folder.private_key("weak", 1024);
    folder.publish_spki(&private, "weak");

    let error = KeyRing::load(&folder.keys_dir()).expect_err("1024 bits are refused");

    assert!(
        matches!(error, KeyError::UnsupportedSize { bits: 1024, .. }),
        "{error:?}"
    );
}

#[test]
fn a_file_name_that_is_not_a_safe_key_id_is_refused() {
    let folder = KeyFolder::new();
    let private = folder.private_key("spaced", 2048);
    folder.publish_spki(&private, "has space");

    let error = KeyRing::load(&folder.keys_dir()).expect_err("unsafe ids are refused");

    assert!(matches!(error, KeyError::UnsafeId { .. }), "{error:?}");
    assert!(error.to_string().contains("has space"), "{error}");
}

#[test]
fn two_keys_in_one_file_are_refused() {
    let folder = KeyFolder::new();
    let private = folder.private_key("one", 2048);
    let path = folder.publish_spki(&private, "double");
    let text = std::fs::read_to_string(&path).expect("readable");
    std::fs::write(&path, format!("{text}{text}")).expect("written");

    let error = KeyRing::load(&folder.keys_dir()).expect_err("two blocks are refused");

    assert!(error.to_string().contains("one key per file"), "{error}");
}

#[test]
fn an_empty_directory_is_refused() {
    let folder = KeyFolder::new();
    folder.write_key_file("notes.txt", "no keys here");

    let error = KeyRing::load(&folder.keys_dir()).expect_err("no keys is refused");

    assert!(matches!(error, KeyError::NoKeys { .. }), "{error:?}");
    assert!(error.to_string().contains("no *.pem"), "{error}");
}

#[test]
fn a_missing_directory_is_refused_naming_it() {
    let folder = KeyFolder::new();
    let missing = folder.keys_dir().join("nowhere");

    let error = KeyRing::load(&missing).expect_err("a missing directory is refused");

    assert!(matches!(error, KeyError::MissingDir { .. }), "{error:?}");
    assert!(error.to_string().contains("nowhere"), "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");
}
