use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::limits::MAX_SLOTS;

/// Why an identifier or count was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// A member id must be 1 to 64 characters of `[A-Za-z0-9_.-]`; the
    /// id is kept shortened for the message.
    #[error("member id {0:?} is invalid: use 1 to 64 characters of A-Z a-z 0-9 _ . -")]
    MemberId(String),
    /// A slot count must be between 1 and [`MAX_SLOTS`].
    #[error("slot count {0} is invalid: a cycle has 1 to {MAX_SLOTS} slots")]
    SlotCount(usize),
}

/// Identifier of a billing cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CycleId(pub u64);

impl fmt::Display for CycleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cycle {}", self.0)
    }
}

/// Number of settlement slots of a cycle, always in `1..=MAX_SLOTS`
/// (deserialisation checks it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct SlotCount(u32);

impl TryFrom<u32> for SlotCount {
    type Error = IdError;
    fn try_from(n: u32) -> Result<Self, IdError> {
        SlotCount::new(n as usize)
    }
}

impl From<SlotCount> for u32 {
    fn from(s: SlotCount) -> u32 {
        s.0
    }
}

impl SlotCount {
    /// Checks `n` against `1..=MAX_SLOTS`.
    pub fn new(n: usize) -> Result<SlotCount, IdError> {
        if n == 0 || n > MAX_SLOTS as usize {
            return Err(IdError::SlotCount(n));
        }
        Ok(SlotCount(n as u32))
    }

    /// The count as a length.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Identifier of a community member (a household). Members are ordered by
/// the bytes of their id; PRZS mask signs follow that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberId(String);

impl MemberId {
    /// Validates an id: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    pub fn new(id: impl Into<String>) -> Result<MemberId, IdError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if ok {
            Ok(MemberId(id))
        } else {
            Err(IdError::MemberId(crate::shorten(&id)))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MemberId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        MemberId::new(s)
    }
}

impl From<MemberId> for String {
    fn from(id: MemberId) -> String {
        id.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifier of a community; it separates the PRZS keys of communities
/// whose members happen to share identity keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommunityId(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_validated() {
        assert!(MemberId::new("house-12.a_b").is_ok());
        assert!(MemberId::new("").is_err());
        assert!(MemberId::new("a b").is_err());
        assert!(MemberId::new("x".repeat(65)).is_err());
        assert!(serde_json::from_str::<MemberId>("\"bad id\"").is_err());
    }

    #[test]
    fn slot_counts_are_bounded() {
        assert!(SlotCount::new(0).is_err());
        assert!(SlotCount::new(MAX_SLOTS as usize + 1).is_err());
        assert_eq!(SlotCount::new(672).unwrap().get(), 672);
        assert!(serde_json::from_str::<SlotCount>("0").is_err());
        assert!(serde_json::from_str::<SlotCount>("4033").is_err());
        assert_eq!(serde_json::from_str::<SlotCount>("96").unwrap().get(), 96);
    }
}
