//! Why the keys directory could not be loaded: each variant names the file or directory and
//! the problem, so an operator can mend it from the message alone; and the rules those
//! messages state.

use std::path::PathBuf;

/// Smallest modulus accepted, in bits (what the verification algorithm supports).
pub const MIN_KEY_BITS: usize = 2048;
/// Largest modulus accepted, in bits.
pub const MAX_KEY_BITS: usize = 8192;
/// Longest key id accepted, in bytes.
pub(crate) const MAX_ID_LEN: usize = 128;

/// PEM label of an X.509 SubjectPublicKeyInfo (`openssl rsa -pubout`).
pub(crate) const SPKI_TAG: &str = "PUBLIC KEY";
/// PEM label of a PKCS#1 RSAPublicKey (`openssl rsa -RSAPublicKey_out`).
pub(crate) const PKCS1_TAG: &str = "RSA PUBLIC KEY";

/// Why the keys directory could not be loaded. Each variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The directory does not exist.
    #[error("keys directory {} does not exist", .dir.display())]
    MissingDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory exists but cannot be listed.
    #[error("cannot read keys directory {}: {source}", .dir.display())]
    UnreadableDir {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// No `*.pem` file in the directory.
    #[error("keys directory {} holds no *.pem public key", .dir.display())]
    NoKeys {
        /// The directory.
        dir: PathBuf,
    },
    /// A key file cannot be read.
    #[error("cannot read key file {}: {source}", .path.display())]
    UnreadableFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file name does not make a safe key id.
    #[error(
        "key file {}: the key id {id:?} is not a safe name (1 to {MAX_ID_LEN} letters, digits, \
         '-', '_' or '.', starting with a letter or digit); rename the file",
        .path.display()
    )]
    UnsafeId {
        /// The file.
        path: PathBuf,
        /// The id its name gives (lossily decoded).
        id: String,
    },
    /// The file holds no PEM block, or PEM that does not decode.
    #[error("key file {} is not PEM: {reason}", .path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The PEM block is not a public key.
    #[error(
        "key file {} holds a {label:?} PEM block; expected one \"{SPKI_TAG}\" or \
         \"{PKCS1_TAG}\" block{hint}",
        .path.display()
    )]
    WrongLabel {
        /// The file.
        path: PathBuf,
        /// The label found.
        label: String,
        /// Advice when the label shows a private key.
        hint: &'static str,
    },
    /// The DER inside does not parse as an RSA public key (an EC key, say, or corrupt data).
    #[error("key file {} is not a valid RSA public key ({detail})", .path.display())]
    NotRsa {
        /// The file.
        path: PathBuf,
        /// What the crypto library said.
        detail: String,
    },
    /// The modulus is too short or too long.
    #[error(
        "key file {} holds a {bits}-bit RSA key; {MIN_KEY_BITS} to {MAX_KEY_BITS} bits are \
         supported",
        .path.display()
    )]
    UnsupportedSize {
        /// The file.
        path: PathBuf,
        /// The modulus length in bits.
        bits: usize,
    },
}
