//! How large a YAML text becomes once its aliases are expanded, found before
//! it is turned into a value.
//!
//! An alias (`*name`) stands for a copy of the node its anchor (`&name`)
//! marks, and the parser makes that copy: a 900 KB string anchored once and
//! aliased 5,000 times in a list (a 920 KB file, under the 1 MiB cap) became
//! 4.5 GB of values. So the text is first walked by a visitor that builds
//! nothing and only counts what the values would hold: the bytes of every
//! scalar (keys included) plus [`NODE_COST`] for every node, aliases
//! expanded as the parser expands them. The walk stops as soon as the count
//! passes the limit, so neither its time nor its memory grows with the
//! expansion.
//!
//! Owns: that count and its limit. Must not: interpret values (the checks
//! that follow do).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The most a `bodywork.yaml` may expand to, in bytes as counted here. A
/// project's file is a few KB; anchors and aliases that share a block of
/// settings between stages stay far below this.
pub const MAX_YAML_EXPANDED: u64 = 8 << 20;

/// What every node counts for besides its text: a list of a million empty
/// strings is not free either.
const NODE_COST: u64 = 16;

/// Why the walk stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expansion {
    /// Past the limit.
    TooLarge,
    /// Not YAML the parser reads; the real parse reports it.
    Invalid,
}

/// Count what `text` expands to, or say it passes `max`.
pub(crate) fn check_expansion(text: &str, max: u64) -> Result<u64, Expansion> {
    let mut count = Counter { used: 0, max };
    let de = serde_norway::Deserializer::from_str(text);
    match (&mut count).deserialize(de) {
        Ok(()) => Ok(count.used),
        Err(_) if count.used > count.max => Err(Expansion::TooLarge),
        Err(_) => Err(Expansion::Invalid),
    }
}

/// The running count, shared by every level of the walk.
struct Counter {
    used: u64,
    max: u64,
}

impl Counter {
    fn add<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        self.used = self
            .used
            .saturating_add(NODE_COST)
            .saturating_add(bytes as u64);
        if self.used > self.max {
            Err(E::custom("expands past the limit"))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut Counter {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Counter {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.add(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.add(8)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.add(8)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.add(8)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.add(v.len())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.add(v.len())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.add(v.len())
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.add(v.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.add(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.add(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.add(0)?;
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.add(0)?;
        while map.next_key_seed(&mut *self)?.is_some() {
            map.next_value_seed(&mut *self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): its tag, then its value.
        use de::VariantAccess;
        let ((), variant) = data.variant_seed(&mut *self)?;
        variant.newtype_variant_seed(&mut *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` aliases of one anchored string of `len` bytes.
    fn bomb(len: usize, n: usize) -> String {
        let mut text = format!("big: &big \"{}\"\nlist:\n", "x".repeat(len));
        for _ in 0..n {
            text.push_str("  - *big\n");
        }
        text
    }

    #[test]
    fn an_ordinary_file_counts_about_its_size() {
        let text = "version: \"1.1\"\npipeline:\n  name: p\n  DAG: a\nstages:\n  a:\n    executable_module_path: a.py\n";
        let used = check_expansion(text, MAX_YAML_EXPANDED).expect("small");
        assert!(used > 60 && used < 1_000, "{used}");
    }

    #[test]
    fn aliases_count_as_the_copies_the_parser_makes() {
        let once = check_expansion(&bomb(1000, 1), u64::MAX).expect("counted");
        let ten = check_expansion(&bomb(1000, 10), u64::MAX).expect("counted");
        assert!(ten - once >= 9 * 1000, "{once} {ten}");
        // Anchors shared between stages, as projects use them, pass.
        let shared = "defaults: &d\n  retries: 2\n  max_completion_time_seconds: 30\nstages:\n  a:\n    batch: *d\n  b:\n    batch: *d\n";
        assert!(check_expansion(shared, MAX_YAML_EXPANDED).is_ok());
    }

    #[test]
    fn the_alias_bomb_of_the_issue_stops_at_the_limit_at_once() {
        // 900 KB aliased 5,000 times: 4.5 GB expanded.
        let text = bomb(900_000, 5_000);
        assert!(text.len() < 1 << 20, "under the file cap");
        assert_eq!(
            check_expansion(&text, MAX_YAML_EXPANDED),
            Err(Expansion::TooLarge)
        );
    }

    #[test]
    fn nested_aliases_are_counted_multiplied() {
        // Billion laughs: each level lists the one before nine times.
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        // The parser's own limit on alias uses (100 per event of the text)
        // stops this one before the count does; either way nothing is built.
        assert!(check_expansion(&text, MAX_YAML_EXPANDED).is_err());
        assert!(serde_norway::from_str::<serde_norway::Value>(&text).is_err());
    }

    #[test]
    fn invalid_yaml_is_left_to_the_parser() {
        assert_eq!(
            check_expansion("a: [unclosed", MAX_YAML_EXPANDED),
            Err(Expansion::Invalid)
        );
        // An alias with no anchor is the parser's to report too.
        assert_eq!(
            check_expansion("a: *nowhere", MAX_YAML_EXPANDED),
            Err(Expansion::Invalid)
        );
    }
}
