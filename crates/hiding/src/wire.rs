//! Versioned binary encoding of what travels: `kind (4 bytes) | version
//! (u16 LE) | bincode 2 (serde, fixed-width integers)`. Decoding refuses
//! truncated, oversized, trailing or inconsistent input with a typed error.
//!
//! Each kind has its own version ([`Wire::VERSION`]): `HiddenData` is at
//! version 2 since it names its community ([`HIDDEN_DATA_VERSION`]); bytes
//! of an earlier version of a kind are refused as
//! [`DecodeError::Outdated`], saying what changed.

use bincode::config::{self, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::{DropoutCorrection, HiddenBill, HiddenData};

/// Format version of `HiddenBill` and `DropoutCorrection` (and of
/// `HiddenData` before it named its community).
pub const FORMAT_VERSION: u16 = 1;

/// Format version of `HiddenData`: 2 since it names its community.
pub const HIDDEN_DATA_VERSION: u16 = 2;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ends early.
    #[error("input truncated")]
    Truncated,
    /// The input is larger than any valid message of this kind.
    #[error("input of {len} bytes exceeds the limit of {limit}")]
    Oversized {
        /// Input length.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The input is another kind of message.
    #[error("not a {expected} message")]
    Kind {
        /// The kind expected.
        expected: &'static str,
    },
    /// The input has an unsupported format version.
    #[error("unsupported format version {0}")]
    Version(u16),
    /// The input has an earlier format version of its kind, which this
    /// build no longer reads.
    #[error(
        "{name} of format version {found} is from an earlier release; this build reads version {reads} ({changed})"
    )]
    Outdated {
        /// The kind.
        name: &'static str,
        /// The version found.
        found: u16,
        /// The version this build reads.
        reads: u16,
        /// What changed since.
        changed: &'static str,
    },
    /// The input does not decode.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// Bytes follow the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// The message decodes but is inconsistent.
    #[error("inconsistent message: {0}")]
    Inconsistent(&'static str),
}

/// A message type with a wire form.
pub trait Wire: Serialize + DeserializeOwned {
    /// Four-byte kind tag.
    const KIND: [u8; 4];
    /// Name, for errors.
    const NAME: &'static str;
    /// Largest valid encoding.
    const LIMIT: usize;
    /// The format version written and read.
    const VERSION: u16 = FORMAT_VERSION;
    /// What changed at [`Wire::VERSION`], for the error on earlier bytes.
    const CHANGED: &'static str = "";
    /// Consistency check after decoding.
    fn check(&self) -> Result<(), &'static str>;

    /// Encodes the message.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(&Self::KIND);
        out.extend_from_slice(&Self::VERSION.to_le_bytes());
        // Serialising plain data into a Vec cannot fail.
        let body = bincode::serde::encode_to_vec(self, cfg()).unwrap_or_default();
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and checks a message.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > Self::LIMIT {
            return Err(DecodeError::Oversized {
                len: bytes.len(),
                limit: Self::LIMIT,
            });
        }
        if bytes.len() < 6 {
            return Err(DecodeError::Truncated);
        }
        if bytes[..4] != Self::KIND {
            return Err(DecodeError::Kind {
                expected: Self::NAME,
            });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != Self::VERSION {
            return Err(if version < Self::VERSION && !Self::CHANGED.is_empty() {
                DecodeError::Outdated {
                    name: Self::NAME,
                    found: version,
                    reads: Self::VERSION,
                    changed: Self::CHANGED,
                }
            } else {
                DecodeError::Version(version)
            });
        }
        let body = &bytes[6..];
        let (value, used): (Self, usize) = bincode::serde::decode_from_slice(
            body,
            config::standard()
                .with_fixed_int_encoding()
                .with_limit::<{ 1 << 21 }>(),
        )
        .map_err(|e| match e {
            bincode::error::DecodeError::UnexpectedEnd { .. } => DecodeError::Truncated,
            bincode::error::DecodeError::LimitExceeded => DecodeError::Oversized {
                len: bytes.len(),
                limit: Self::LIMIT,
            },
            other => DecodeError::Malformed(other.to_string()),
        })?;
        if used != body.len() {
            return Err(DecodeError::Trailing(body.len() - used));
        }
        value.check().map_err(DecodeError::Inconsistent)?;
        Ok(value)
    }
}

fn cfg() -> impl Config {
    // Random ciphertext words do not shrink under varints; fixed width is
    // both smaller and constant-time to size.
    config::standard().with_fixed_int_encoding()
}

impl Wire for HiddenData {
    const KIND: [u8; 4] = *b"PBHD";
    const NAME: &'static str = "HiddenData";
    // 5 ciphertexts (4032 slots) of 128 KiB, masks of 3 x 4032 x 8 bytes.
    const LIMIT: usize = 1 << 20;
    const VERSION: u16 = HIDDEN_DATA_VERSION;
    const CHANGED: &'static str = "it now names its community: hide the data again";
    fn check(&self) -> Result<(), &'static str> {
        self.check_shape()
    }
}

impl Wire for HiddenBill {
    const KIND: [u8; 4] = *b"PBHB";
    const NAME: &'static str = "HiddenBill";
    const LIMIT: usize = 132 * 1024;
    fn check(&self) -> Result<(), &'static str> {
        self.check_shape()
    }
}

impl Wire for DropoutCorrection {
    const KIND: [u8; 4] = *b"PBDC";
    const NAME: &'static str = "DropoutCorrection";
    const LIMIT: usize = 128 * 1024;
    fn check(&self) -> Result<(), &'static str> {
        if self.vectors.len() != 3
            || self
                .vectors
                .iter()
                .any(|v| v.len() != self.vectors[0].len())
        {
            return Err("correction vectors of unequal lengths");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb_glwe::layout::chunk_count;
    use pb_glwe::params::POLYNOMIAL_SIZE;
    use pb_glwe::{HiddenTotals, SeededGlwe};
    use pb_model::BillingModel;
    use pb_units::{CommunityId, CycleId, MemberId, SlotCount};
    use proptest::prelude::*;

    fn words(seed: u64, n: usize) -> impl Iterator<Item = u64> {
        let mut s = seed;
        (0..n).map(move |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s
        })
    }

    fn hidden_data(slots: usize, seed: u64) -> HiddenData {
        let mut w = words(seed, usize::MAX);
        let mut next = move || w.next().unwrap_or(0);
        HiddenData {
            community: CommunityId(format!("c{}", seed % 7)),
            member: MemberId::new(format!("m{seed}")).unwrap(),
            cycle: CycleId(seed),
            model: BillingModel::ALL[(seed % 3) as usize],
            slots: SlotCount::new(slots).unwrap(),
            masked: (0..3)
                .map(|_| (0..slots).map(|_| next()).collect())
                .collect(),
            ciphertexts: (0..chunk_count(3 * slots))
                .map(|_| SeededGlwe {
                    seed: (next() as u128) << 64 | next() as u128,
                    body: (0..POLYNOMIAL_SIZE)
                        .map(|_| (next() as u128) << 64 | next() as u128)
                        .collect(),
                })
                .collect(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn hidden_data_round_trips_and_every_truncation_is_an_error(
            slots in 1usize..3000, seed in any::<u64>(), cut in any::<prop::sample::Index>(),
        ) {
            let d = hidden_data(slots, seed);
            let bytes = d.to_bytes();
            prop_assert_eq!(HiddenData::from_bytes(&bytes).unwrap(), d);
            let at = cut.index(bytes.len());
            prop_assert!(HiddenData::from_bytes(&bytes[..at]).is_err());
        }

        #[test]
        fn hidden_bills_round_trip_and_corruption_never_panics(
            seed in any::<u64>(), flip in any::<prop::sample::Index>(), byte in any::<u8>(),
        ) {
            let mut w = words(seed, 2 * POLYNOMIAL_SIZE + 4);
            let mut next = move || w.next().unwrap_or(0);
            let b = HiddenBill {
                member: MemberId::new("h").unwrap(),
                cycle: CycleId(seed),
                totals: HiddenTotals {
                    mask: (0..POLYNOMIAL_SIZE).map(|_| (next() as u128) << 64 | next() as u128).collect(),
                    body: [next() as u128, next() as u128],
                },
            };
            let mut bytes = b.to_bytes();
            prop_assert_eq!(HiddenBill::from_bytes(&bytes).unwrap(), b);
            // Corrupting the header or the lengths gives an error, never a panic;
            // corrupting a coefficient gives another valid message.
            let at = flip.index(bytes.len());
            bytes[at] ^= byte | 1;
            let _ = HiddenBill::from_bytes(&bytes);
        }
    }

    #[test]
    fn hidden_data_names_its_community_and_version_1_bytes_are_refused_clearly() {
        let d = hidden_data(4, 3);
        let bytes = d.to_bytes();
        assert_eq!(
            u16::from_le_bytes([bytes[4], bytes[5]]),
            HIDDEN_DATA_VERSION
        );
        assert_eq!(
            HiddenData::from_bytes(&bytes).unwrap().community,
            d.community
        );
        // The bytes of version 1 (no community): the header says so.
        let mut old = bytes.clone();
        old[4..6].copy_from_slice(&1u16.to_le_bytes());
        let e = HiddenData::from_bytes(&old).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Outdated {
                name: "HiddenData",
                found: 1,
                reads: HIDDEN_DATA_VERSION,
                changed: "it now names its community: hide the data again",
            }
        );
        assert!(e.to_string().contains("names its community"), "{e}");
        // A later, unknown version is another error.
        old[4..6].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(HiddenData::from_bytes(&old), Err(DecodeError::Version(9)));
        // No community named: inconsistent.
        let mut nameless = d.clone();
        nameless.community = CommunityId(String::new());
        assert_eq!(
            HiddenData::from_bytes(&nameless.to_bytes()),
            Err(DecodeError::Inconsistent("no community named"))
        );
    }

    #[test]
    fn bills_and_corrections_keep_format_version_1() {
        let b = HiddenBill {
            member: MemberId::new("h").unwrap(),
            cycle: CycleId(1),
            totals: HiddenTotals {
                mask: vec![0; POLYNOMIAL_SIZE],
                body: [0, 0],
            },
        };
        let bytes = b.to_bytes();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), FORMAT_VERSION);
        assert_eq!(HiddenBill::from_bytes(&bytes).unwrap(), b);
    }
}
