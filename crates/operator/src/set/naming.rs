//! Names of the MediaJobs a MediaJobSet creates: one per source object, derived from the set's
//! name and the object's key alone, so a restarted operator finds the child it already made
//! instead of making a second one.

/// Holds the child's full source key (relative to the set's prefix). Child names carry only a
/// 64-bit hash of the key, so when a child of the expected name exists, the controller compares
/// this annotation with the key: a child naming another key is a hash collision, to be reported,
/// not silently taken as that key's finished job.
pub const KEY_ANNOTATION: &str = "mediajob.io/source-key";

/// Names the set a child belongs to (the set's name, when it fits a label value; the owner
/// reference is the proof either way). The name's hash covers the set's full name, so sets whose
/// shortened names agree (`a.b` and `a-b`) still make different children.
pub const SET_LABEL: &str = "mediajob.io/set";

/// Kubernetes object names that must be DNS labels (RFC 1123) are at most 63 characters.
const MAX_LABEL: usize = 63;
/// `key_hash` in hex.
const HASH_DIGITS: usize = 16;

/// FNV-1a, 64 bits, over the key's UTF-8 bytes.
///
/// Stable forever: it is part of the child names stored in etcd, so changing it would make the
/// operator create a second job for every object an existing set has already processed.
pub fn key_hash(key: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The child MediaJob's name: `<set name, shortened>-<16 hex digits of the hash of the set's
/// name and the key>`, a DNS label
/// of at most 63 characters.
///
/// `set_name` is a DNS subdomain name (up to 253 characters of `a-z`, `0-9`, `-`, `.`). Its `.`
/// become `-` (a label has none) and it is cut to fit; the `-` a cut may leave at the end go.
/// Any other character (none in a valid name) also becomes `-`, so the result is a label
/// whatever the input.
pub fn child_name(set_name: &str, key: &str) -> String {
    let room = MAX_LABEL - HASH_DIGITS - 1;
    let prefix: String = set_name
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    let prefix = prefix.trim_matches('-');
    // The full set name and the key, apart by a byte no Kubernetes name holds.
    let hash = key_hash(&format!("{set_name}\n{key}"));
    if prefix.is_empty() {
        format!("{hash:016x}")
    } else {
        format!("{prefix}-{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn is_dns_label(name: &str) -> bool {
        let bytes = name.as_bytes();
        let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        (1..=MAX_LABEL).contains(&bytes.len())
            && bytes.iter().all(allowed)
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
    }

    #[test]
    fn key_hash_is_fnv1a_64() {
        // Published FNV-1a test vectors; these values name children in etcd, never change them.
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_hash("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(key_hash("ep1/a.wav"), 0x11b8_f79c_031c_eb73);
    }

    #[test]
    fn short_names_are_kept() {
        assert_eq!(
            child_name("podcast", "ep1/a.wav"),
            format!("podcast-{:016x}", key_hash("podcast\nep1/a.wav"))
        );
        assert_eq!(child_name("a", ""), format!("a-{:016x}", key_hash("a\n")));
    }

    #[test]
    fn dotted_names_become_labels() {
        let name = child_name("media.example.com", "ep1/a.wav");
        assert!(name.starts_with("media-example-com-"), "{name}");
        assert!(is_dns_label(&name));
    }

    #[test]
    fn long_names_are_cut_to_63() {
        let set = "s".repeat(253);
        let name = child_name(&set, "k");
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"s".repeat(46)));
        assert!(is_dns_label(&name));
        // A cut right after a `-` or `.` leaves no `-` before the hash's.
        for separator in ['-', '.'] {
            for at in 40..50 {
                let set = format!("{}{separator}{}", "a".repeat(at), "b".repeat(100));
                let name = child_name(&set, "k");
                assert!(is_dns_label(&name), "{name}");
                assert!(name.len() <= MAX_LABEL, "{name}");
                assert!(!name.contains("--"), "{name}");
            }
        }
        let set = format!("{}.-.b", "a".repeat(44));
        assert_eq!(
            child_name(&set, "k"),
            format!("{}-{:016x}", "a".repeat(44), key_hash(&format!("{set}\nk")))
        );
    }

    #[test]
    fn always_a_label() {
        for set in ["", "-", "...", "A.B", "é", "x_y", "9", "a-", "-a"] {
            let name = child_name(set, "k");
            assert!(is_dns_label(&name), "{set:?} gives {name}");
        }
    }

    #[test]
    fn deterministic() {
        assert_eq!(child_name("set", "a/b.wav"), child_name("set", "a/b.wav"));
        assert_ne!(child_name("set", "a/b.wav"), child_name("set", "a/b.wa"));
        assert_ne!(child_name("set", "a/b.wav"), child_name("other", "a/b.wav"));
    }

    /// Set names that shorten alike still make different children: the hash covers the
    /// whole name.
    #[test]
    fn set_names_that_shorten_alike_make_different_children() {
        assert_ne!(child_name("a.b", "k"), child_name("a-b", "k"));
        let long = "x".repeat(46);
        assert_ne!(
            child_name(&format!("{long}-one"), "k"),
            child_name(&format!("{long}-two"), "k")
        );
    }

    #[test]
    fn distinct_keys_give_distinct_names() {
        let mut names = HashSet::new();
        let mut count = 0;
        for episode in 0..1_000 {
            for take in 0..100 {
                let key = format!("season-{}/ep{episode}/take-{take:03}.wav", episode % 7);
                let name = child_name("a-rather-long-media-job-set-name.example.com", &key);
                assert!(name.len() <= MAX_LABEL);
                names.insert(name);
                count += 1;
            }
        }
        assert_eq!(count, 100_000);
        assert_eq!(names.len(), count);
        assert!(names.iter().take(100).all(|name| is_dns_label(name)));
    }
}
