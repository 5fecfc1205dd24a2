//! The core's durable state in redb: the household's secret keys, the
//! cycles it takes part in, its data, what it sent, and its bills.

use std::path::Path;

use pb_glwe::{CompactPublicKey, SecretKey};
use pb_hiding::HiddenData;
use pb_hiding::wire::Wire;
use pb_model::{Bill, CycleContext, Data};
use pb_przs::IdentityKey;
use pb_secagg::{Client, Round, SignedRoster};
use pb_units::CycleId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CoreError;
use crate::sealed::{self, Passphrase};

pub use pb_inputs::private_store_file;

const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CYCLES: TableDefinition<u64, &[u8]> = TableDefinition::new("cycles");
const DATA: TableDefinition<u64, &[u8]> = TableDefinition::new("data");
const HIDDEN: TableDefinition<u64, &[u8]> = TableDefinition::new("hidden");
const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("state");
const BILLS: TableDefinition<u64, &[u8]> = TableDefinition::new("bills");
/// The last verified member list.
const ROSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("roster");
/// Each cycle's SecAgg+ state (its per-cycle secrets: sealed with the
/// passphrase when one is configured), written before any message that
/// depends on it is sent.
const SECAGG: TableDefinition<u64, &[u8]> = TableDefinition::new("secagg");

/// A cycle as the edge described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleEntry {
    /// Prices and model.
    pub context: CycleContext,
    /// Version of the signed member list the cycle runs on.
    pub roster_version: u64,
}

/// Where one cycle stands at this core.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleState {
    /// The edge accepted the masked submission.
    pub submitted: bool,
    /// The last SecAgg+ round whose message the edge accepted.
    pub sent: Option<Round>,
    /// A final refusal from the edge.
    pub failure: Option<String>,
    /// Bytes of the sealed submission.
    pub upload_bytes: u64,
    /// Bytes of the sealed bill.
    pub download_bytes: u64,
    /// Time to mask and encrypt, microseconds.
    pub hide_micros: u64,
    /// Time to decrypt, microseconds.
    pub decrypt_micros: u64,
}

/// The household's keys.
pub struct Secrets {
    /// X25519 key for PRZS.
    pub przs: IdentityKey,
    /// GLWE secret key (shared with the cycles' hiding contexts).
    pub glwe: std::sync::Arc<SecretKey>,
    /// The compact public key registered at the edge.
    pub public_key: CompactPublicKey,
}

fn cfg() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, CoreError> {
    bincode::serde::encode_to_vec(v, cfg()).map_err(|e| CoreError::Store(e.to_string()))
}

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CoreError> {
    bincode::serde::decode_from_slice(bytes, cfg())
        .map(|(v, _)| v)
        .map_err(|e| CoreError::Store(format!("corrupt record: {e}")))
}

fn err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Store(e.to_string())
}

/// The core's store.
#[derive(Debug)]
pub struct CoreStore {
    db: Database,
}

impl CoreStore {
    /// Opens or creates `dir/core.redb`.
    /// The directory is created 0700 and `core.redb` 0600.
    pub fn open(dir: &Path) -> Result<CoreStore, CoreError> {
        let path = private_store_file(dir, "core.redb")
            .map_err(|e| CoreError::Store(format!("{}: {e}", dir.display())))?;
        // A small page cache: a core stores a few hundred KiB per cycle.
        let db = redb::Builder::new()
            .set_cache_size(8 << 20)
            .create(path)
            .map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        {
            txn.open_table(SECRETS).map_err(err)?;
            txn.open_table(META).map_err(err)?;
            txn.open_table(CYCLES).map_err(err)?;
            txn.open_table(DATA).map_err(err)?;
            txn.open_table(HIDDEN).map_err(err)?;
            txn.open_table(STATE).map_err(err)?;
            txn.open_table(BILLS).map_err(err)?;
            txn.open_table(ROSTER).map_err(err)?;
            txn.open_table(SECAGG).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(CoreStore { db })
    }

    /// The household's keys, generated and stored in clear on first use.
    pub fn secrets(&self) -> Result<Secrets, CoreError> {
        self.secrets_with(None)
    }

    /// The household's keys, generated and stored on first use: sealed
    /// under `passphrase` when one is given ([`crate::sealed`]), in clear
    /// otherwise. A store whose keys are sealed needs the passphrase; a
    /// store that holds them in clear is refused with a passphrase (the
    /// clear keys may linger in the file: encryption at rest applies to a
    /// new store). Every refusal changes nothing.
    pub fn secrets_with(&self, passphrase: Option<&Passphrase>) -> Result<Secrets, CoreError> {
        {
            let r = self.db.begin_read().map_err(err)?;
            let t = r.open_table(SECRETS).map_err(err)?;
            let get = |k: &str| -> Result<Option<Zeroizing<Vec<u8>>>, CoreError> {
                Ok(t.get(k)
                    .map_err(err)?
                    .map(|v| Zeroizing::new(v.value().to_vec())))
            };
            let pk = get("public_key")?;
            let (clear, sealed_record) = ((get("przs")?, get("glwe")?), get("sealed")?);
            let opened;
            let (p, g) = match (clear, sealed_record, passphrase) {
                ((Some(_), Some(_)), _, Some(_)) => {
                    return Err(CoreError::Config(
                        "secrets_passphrase_file is set but this store holds the household's keys in clear (encryption at rest applies to a new store)".into(),
                    ));
                }
                ((Some(p), Some(g)), _, None) => (Some(p), Some(g)),
                (_, Some(_), None) => {
                    return Err(CoreError::Config(
                        "the household's keys in this store are encrypted: set secrets_passphrase_file".into(),
                    ));
                }
                (_, Some(s), Some(pass)) => {
                    opened = sealed::open(pass, &s)?;
                    if opened.len() != 32 + pb_glwe::params::POLYNOMIAL_SIZE / 8 {
                        return Err(CoreError::Store("corrupt sealed secrets".into()));
                    }
                    (
                        Some(Zeroizing::new(opened[..32].to_vec())),
                        Some(Zeroizing::new(opened[32..].to_vec())),
                    )
                }
                _ => (None, None),
            };
            if let (Some(p), Some(g), Some(pk)) = (p, g, pk) {
                let przs: [u8; 32] = p
                    .as_slice()
                    .try_into()
                    .map_err(|_| CoreError::Store("corrupt PRZS key".into()))?;
                let glwe = SecretKey::from_bytes(&g)
                    .ok_or_else(|| CoreError::Store("corrupt GLWE key".into()))?;
                return Ok(Secrets {
                    przs: IdentityKey::from_bytes(przs),
                    glwe: glwe.into(),
                    public_key: dec(&pk)?,
                });
            }
        }
        let mut seeder = pb_glwe::seeding::new_seeder();
        let przs = IdentityKey::generate(&mut rand_core::OsRng);
        let glwe = SecretKey::generate(seeder.as_mut());
        let public_key = glwe.public_key(seeder.as_mut());
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut t = txn.open_table(SECRETS).map_err(err)?;
            let przs_bytes = Zeroizing::new(przs.to_bytes());
            match passphrase {
                Some(pass) => {
                    let mut both = Zeroizing::new(przs_bytes.to_vec());
                    both.extend_from_slice(&glwe.to_bytes());
                    t.insert("sealed", sealed::seal(pass, &both)?.as_slice())
                        .map_err(err)?;
                }
                None => {
                    t.insert("przs", przs_bytes.as_slice()).map_err(err)?;
                    t.insert("glwe", glwe.to_bytes().as_slice()).map_err(err)?;
                }
            }
            t.insert("public_key", enc(&public_key)?.as_slice())
                .map_err(err)?;
        }
        txn.commit().map_err(err)?;
        tracing::info!("household keys generated");
        Ok(Secrets {
            przs,
            glwe: glwe.into(),
            public_key,
        })
    }

    /// Whether the edge accepted this core's Join.
    pub fn joined(&self) -> Result<bool, CoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(META).map_err(err)?;
        Ok(t.get("joined").map_err(err)?.is_some())
    }

    /// Records the Join.
    pub fn set_joined(&self) -> Result<(), CoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(META)
            .map_err(err)?
            .insert("joined", 1u64)
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    fn get<T: DeserializeOwned>(
        &self,
        def: TableDefinition<u64, &[u8]>,
        cycle: CycleId,
    ) -> Result<Option<T>, CoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(def).map_err(err)?;
        t.get(cycle.0)
            .map_err(err)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    fn put<T: Serialize>(
        &self,
        def: TableDefinition<u64, &[u8]>,
        cycle: CycleId,
        v: &T,
    ) -> Result<(), CoreError> {
        let bytes = enc(v)?;
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(def)
            .map_err(err)?
            .insert(cycle.0, bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// A cycle known to this core.
    pub fn cycle(&self, cycle: CycleId) -> Result<Option<CycleEntry>, CoreError> {
        self.get(CYCLES, cycle)
    }

    /// Remembers a cycle.
    pub fn put_cycle(&self, entry: &CycleEntry) -> Result<(), CoreError> {
        self.put(CYCLES, entry.context.cycle(), entry)
    }

    /// The household's data for a cycle.
    pub fn data(&self, cycle: CycleId) -> Result<Option<Data>, CoreError> {
        self.get(DATA, cycle)
    }

    /// Stores the household's data, its hidden form and a fresh state in
    /// one transaction.
    pub fn put_submission(
        &self,
        data: &Data,
        hidden: &HiddenData,
        state: &CycleState,
    ) -> Result<(), CoreError> {
        let cycle = data.cycle().0;
        let (d, h, s) = (enc(data)?, hidden.to_bytes(), enc(state)?);
        let txn = self.db.begin_write().map_err(err)?;
        {
            txn.open_table(DATA)
                .map_err(err)?
                .insert(cycle, d.as_slice())
                .map_err(err)?;
            txn.open_table(HIDDEN)
                .map_err(err)?
                .insert(cycle, h.as_slice())
                .map_err(err)?;
            txn.open_table(STATE)
                .map_err(err)?
                .insert(cycle, s.as_slice())
                .map_err(err)?;
        }
        txn.commit().map_err(err)
    }

    /// The hidden data of a cycle.
    pub fn hidden(&self, cycle: CycleId) -> Result<Option<HiddenData>, CoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(HIDDEN).map_err(err)?;
        t.get(cycle.0)
            .map_err(err)?
            .map(|v| {
                HiddenData::from_bytes(v.value())
                    .map_err(|e| CoreError::Store(format!("corrupt record: {e}")))
            })
            .transpose()
    }

    /// A cycle's state.
    pub fn state(&self, cycle: CycleId) -> Result<Option<CycleState>, CoreError> {
        self.get(STATE, cycle)
    }

    /// Updates a cycle's state.
    pub fn put_state(&self, cycle: CycleId, state: &CycleState) -> Result<(), CoreError> {
        self.put(STATE, cycle, state)
    }

    /// Every cycle with data, and its state.
    pub fn states(&self) -> Result<Vec<(CycleId, CycleState)>, CoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(STATE).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            out.push((CycleId(k.value()), dec(v.value())?));
        }
        Ok(out)
    }

    /// A decrypted bill.
    pub fn bill(&self, cycle: CycleId) -> Result<Option<Bill>, CoreError> {
        self.get(BILLS, cycle)
    }

    /// Stores a decrypted bill with the cycle's final state.
    pub fn put_bill(
        &self,
        cycle: CycleId,
        bill: &Bill,
        state: &CycleState,
    ) -> Result<(), CoreError> {
        let (b, s) = (enc(bill)?, enc(state)?);
        let txn = self.db.begin_write().map_err(err)?;
        {
            txn.open_table(BILLS)
                .map_err(err)?
                .insert(cycle.0, b.as_slice())
                .map_err(err)?;
            txn.open_table(STATE)
                .map_err(err)?
                .insert(cycle.0, s.as_slice())
                .map_err(err)?;
        }
        txn.commit().map_err(err)
    }

    /// The last verified member list.
    pub fn roster(&self) -> Result<Option<SignedRoster>, CoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(ROSTER).map_err(err)?;
        t.get("current")
            .map_err(err)?
            .map(|v| dec(v.value()))
            .transpose()
    }

    /// Remembers a verified member list.
    pub fn put_roster(&self, roster: &SignedRoster) -> Result<(), CoreError> {
        let bytes = enc(roster)?;
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(ROSTER)
            .map_err(err)?
            .insert("current", bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// A cycle's SecAgg+ state.
    pub fn client(
        &self,
        cycle: CycleId,
        passphrase: Option<&Passphrase>,
    ) -> Result<Option<Client>, CoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(SECAGG).map_err(err)?;
        let Some(v) = t.get(cycle.0).map_err(err)? else {
            return Ok(None);
        };
        let bytes = v.value();
        match (bytes.split_first(), passphrase) {
            (Some((0, clear)), None) => dec(clear).map(Some),
            (Some((1, sealed_bytes)), Some(pass)) => {
                let clear = sealed::open(pass, sealed_bytes)?;
                dec(&clear).map(Some)
            }
            (Some((1, _)), None) => Err(CoreError::Config(
                "this cycle's masking secrets are encrypted: set secrets_passphrase_file".into(),
            )),
            (Some((0, _)), Some(_)) => Err(CoreError::Config(
                "secrets_passphrase_file is set but this cycle's masking secrets are in clear"
                    .into(),
            )),
            _ => Err(CoreError::Store("corrupt masking state".into())),
        }
    }

    /// Records a cycle's SecAgg+ state (before anything depending on it
    /// is sent: a restarted core never answers differently).
    pub fn put_client(
        &self,
        cycle: CycleId,
        client: &Client,
        passphrase: Option<&Passphrase>,
    ) -> Result<(), CoreError> {
        let clear = Zeroizing::new(enc(client)?);
        let mut bytes = Vec::with_capacity(clear.len() + 64);
        match passphrase {
            Some(pass) => {
                bytes.push(1);
                bytes.extend_from_slice(&sealed::seal(pass, &clear)?);
            }
            None => {
                bytes.push(0);
                bytes.extend_from_slice(&clear);
            }
        }
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(SECAGG)
            .map_err(err)?
            .insert(cycle.0, bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Forgets a cycle's SecAgg+ state once its bill is in (its secrets
    /// are of no further use).
    pub fn drop_client(&self, cycle: CycleId) -> Result<(), CoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(SECAGG)
            .map_err(err)?
            .remove(cycle.0)
            .map_err(err)?;
        txn.commit().map_err(err)
    }
}
