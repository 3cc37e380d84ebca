//! Signature request ids: `<publisher tag>-<random>`, e.g.
//! `1f3a9c0e-3f6c0f0a8a2b4c5e9d1f2a3b4c5d6e7f`. The random part (a v4 UUID, 122 random bits)
//! keeps an id unguessable; the tag — the first 4 bytes of SHA-256 of the publisher id, in hex —
//! names the publisher that accepted the request, so another publisher asked for it can tell an
//! id of a peer it follows (and wait a moment for that peer's event) from garbage.

/// Hex digits of the tag.
const TAG_LEN: usize = 8;
/// Hex digits of the random part.
const RANDOM_LEN: usize = 32;

/// Which publisher made an id: a digest of its id, the same in every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(u32);

impl Tag {
    /// The tag of the publisher called `publisher` (its `PUBLISHER_ID`).
    pub fn of(publisher: &str) -> Tag {
        let digest = wire::sha256(publisher.as_bytes());
        let mut first = [0; 4];
        first.copy_from_slice(&digest[..4]);
        Tag(u32::from_be_bytes(first))
    }

    /// The tag of a well-formed id (lower-case hex in both parts); `None` for anything else.
    pub fn in_id(id: &str) -> Option<Tag> {
        let (tag, random) = id.split_once('-')?;
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let well_formed = tag.len() == TAG_LEN
            && random.len() == RANDOM_LEN
            && lower_hex(tag)
            && lower_hex(random);
        well_formed
            .then(|| u32::from_str_radix(tag, 16).ok().map(Tag))
            .flatten()
    }

    /// A fresh, unguessable id naming this tag's publisher.
    pub fn new_id(self) -> String {
        // Written straight into a string of the right size, not through `format!`.
        let mut id = String::with_capacity(TAG_LEN + 1 + RANDOM_LEN);
        for shift in (0..TAG_LEN as u32).rev() {
            let nibble = (self.0 >> (4 * shift)) & 0xf;
            id.push(char::from_digit(nibble, 16).unwrap_or('0'));
        }
        id.push('-');
        let mut random = uuid::Uuid::encode_buffer();
        id.push_str(uuid::Uuid::new_v4().simple().encode_lower(&mut random));
        id
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_id_names_its_publisher_and_is_never_the_same_twice() {
        let tag = Tag::of("pub-a");

        let (one, two) = (tag.new_id(), tag.new_id());

        assert_eq!(one.len(), TAG_LEN + 1 + RANDOM_LEN);
        assert!(one.starts_with(&format!("{tag}-")), "{one}");
        assert_ne!(one, two);
        assert_eq!(Tag::in_id(&one), Some(tag));
        assert_ne!(Tag::in_id(&one), Some(Tag::of("pub-b")));
    }

    #[test]
    fn anything_but_a_well_formed_id_has_no_tag() {
        let good = Tag::of("pub-a").new_id();
        for bad in [
            "",
            "-",
            "0123456789abcdef0123456789abcdef",
            &good[1..],
            &good.to_uppercase(),
            &good.replacen('-', "_", 1),
            &format!("{good}0"),
            "zzzzzzzz-0123456789abcdef0123456789abcdef",
            "ééééé-0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(Tag::in_id(bad), None, "{bad:?}");
        }
    }
}
