//! A counter per verdict status (`valid`, `invalid`, `error`), its handles looked up once: a
//! lookup by name and label hashes the key and takes the registry's lock, which per task showed
//! in the profile of `bench/signatures.py`.

use wire::SignatureStatus;

/// The handles of one counter family labelled by `status`.
pub struct StatusCounters([metrics::Counter; 3]);

impl StatusCounters {
    /// The handles of counter `name` for every status. Take them after the recorder is
    /// installed: handles taken before count nowhere.
    pub fn new(name: &'static str) -> Self {
        let counter =
            |status: SignatureStatus| metrics::counter!(name, "status" => status.as_str());
        StatusCounters([
            counter(SignatureStatus::Valid),
            counter(SignatureStatus::Invalid),
            counter(SignatureStatus::Error),
        ])
    }

    /// The counter for `status`.
    pub fn of(&self, status: SignatureStatus) -> &metrics::Counter {
        match status {
            SignatureStatus::Valid => &self.0[0],
            SignatureStatus::Invalid => &self.0[1],
            SignatureStatus::Error => &self.0[2],
        }
    }
}
