//! Keys and signatures made with the `openssl` command line, the way a user makes them, in a
//! temporary directory that disappears with the test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// Runs `openssl` with `args`; returns its stdout, or panics with its stderr.
pub fn openssl<I, S>(args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = Command::new("openssl")
        .args(&args)
        .output()
        .expect("the openssl command line is installed");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A temporary directory with `keys/` (what KEYS_DIR points at) and `private/` beside it.
pub struct KeyFolder {
    dir: TempDir,
}

impl Default for KeyFolder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyFolder {
    /// An empty `keys/` and `private/`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("keys")).expect("keys/ created");
        std::fs::create_dir(dir.path().join("private")).expect("private/ created");
        KeyFolder { dir }
    }

    /// The folder itself: `keys/`, `private/` and any scratch files of the test.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory to give as KEYS_DIR.
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// Where scratch files go (outside KEYS_DIR).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join("private").join(name)
    }

    /// `openssl genrsa`: a new private key in `private/<name>.pem`.
    pub fn private_key(&self, name: &str, bits: u32) -> PathBuf {
        let path = self.scratch(&format!("{name}.pem"));
        openssl([
            OsStr::new("genrsa"),
            OsStr::new("-out"),
            path.as_os_str(),
            OsStr::new(&bits.to_string()),
        ]);
        path
    }

    /// `openssl rsa -pubout`: the public half as `keys/<id>.pem`, SubjectPublicKeyInfo PEM.
    pub fn publish_spki(&self, private: &Path, id: &str) -> PathBuf {
        self.publish(private, id, "-pubout")
    }

    /// `openssl rsa -RSAPublicKey_out`: the public half as `keys/<id>.pem`, PKCS#1 PEM.
    pub fn publish_pkcs1(&self, private: &Path, id: &str) -> PathBuf {
        self.publish(private, id, "-RSAPublicKey_out")
    }

    fn publish(&self, private: &Path, id: &str, form: &str) -> PathBuf {
        let path = self.keys_dir().join(format!("{id}.pem"));
        openssl([
            OsStr::new("rsa"),
            OsStr::new("-in"),
            private.as_os_str(),
            OsStr::new(form),
            OsStr::new("-out"),
            path.as_os_str(),
        ]);
        path
    }

    /// Writes any file into `keys/`.
    pub fn write_key_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.keys_dir().join(name);
        std::fs::write(&path, contents).expect("key file written");
        path
    }

    /// A new key pair whose public half is `keys/<id>.pem` (SubjectPublicKeyInfo); returns the
    /// private key's path.
    pub fn key(&self, id: &str) -> PathBuf {
        let private = self.private_key(id, 2048);
        self.publish_spki(&private, id);
        private
    }

    /// `openssl dgst -sha256 -sign`: the signature of `document` with `private`.
    pub fn sign(&self, private: &Path, document: &[u8]) -> Vec<u8> {
        let input = tempfile::NamedTempFile::new_in(self.dir.path()).expect("a scratch file");
        std::fs::write(input.path(), document).expect("document written");
        openssl([
            OsStr::new("dgst"),
            OsStr::new("-sha256"),
            OsStr::new("-sign"),
            private.as_os_str(),
            input.path().as_os_str(),
        ])
    }

    /// [`sign`](Self::sign), hex-encoded as the HTTP API takes it.
    pub fn sign_hex(&self, private: &Path, document: &[u8]) -> String {
        hex::encode(self.sign(private, document))
    }
}
