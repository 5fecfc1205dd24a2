//! `core.toml`: one household's core.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pb_protocol::NodeId;
use pb_units::{CommunityId, MemberId};
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The core's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// The household's member id (as enrolled at the edge).
    pub member: String,
    /// Community name (must match the edge's).
    pub community: String,
    /// The edge's endpoint.
    pub edge: String,
    /// The edge's node id (64 hex digits): only answers signed by it are
    /// trusted.
    pub edge_node: String,
    /// The operator's enrolment key (its node id, 64 hex digits): the
    /// member list must be signed by it. Pinned here, never learnt from the
    /// edge, so the edge cannot hand this core a list of its own making.
    pub operator: String,
    /// Fewest members a member list (and a cycle's survivor set) must have
    /// for this household to take part.
    #[serde(default = "default_min_members")]
    pub min_members: usize,
    /// Endpoint of the household API (keep it on loopback or a private
    /// network: it is the household's own interface).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of the core's store (holds the household's secret keys).
    pub data_dir: PathBuf,
    /// The core's signing key (written by `pbill keygen`).
    pub key_file: PathBuf,
    /// Optional: a file whose contents (a passphrase or random key, 8 to
    /// 256 bytes) encrypt the household's secret keys in the store
    /// (Argon2id and ChaCha20-Poly1305). Off when absent; it must be set
    /// when the store was created with it, and cannot be added to a store
    /// created without it.
    #[serde(default)]
    pub secrets_passphrase_file: Option<PathBuf>,
    /// Fault drill only (`pbill demo --unmask-dropouts`): after its masked
    /// submission is accepted the core goes silent for that cycle, as a
    /// household that vanishes before unmasking. Never set it otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill_silent_after_mask: bool,
    /// How often the core talks to the edge while work is pending.
    #[serde(default = "default_poll")]
    pub poll_millis: u64,
    /// Timeout of one request to the edge.
    #[serde(default = "default_timeout")]
    pub request_timeout_millis: u64,
    /// Address (`IP:PORT`) of the Prometheus metrics endpoint
    /// (`http://IP:PORT/metrics`); off when absent.
    #[serde(default)]
    pub metrics: Option<String>,
}

fn default_listen() -> String {
    "tcp://127.0.0.1:6000".into()
}

fn default_min_members() -> usize {
    pb_units::limits::DEFAULT_MIN_MEMBERS
}

fn default_poll() -> u64 {
    1000
}

fn default_timeout() -> u64 {
    10_000
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Member.
    pub member: MemberId,
    /// Community.
    pub community: CommunityId,
    /// Edge identity.
    pub edge_node: NodeId,
    /// The operator's enrolment key.
    pub operator: [u8; 32],
    /// Fewest members of a list or survivor set.
    pub min_members: usize,
    /// Poll interval.
    pub poll: Duration,
    /// Request timeout.
    pub timeout: Duration,
}

impl CoreConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<CoreConfig, CoreError> {
        let text = pb_inputs::bounded_text(path, pb_inputs::Kind::Config)
            .map_err(|e| CoreError::Config(e.to_string()))?;
        let config: CoreConfig = toml::from_str(&text)
            .map_err(|e| CoreError::Config(format!("{}: {e}", path.display())))?;
        config.check()?;
        Ok(config)
    }

    /// Checks every field.
    pub fn check(&self) -> Result<Checked, CoreError> {
        let member = MemberId::new(self.member.clone())
            .map_err(|e| CoreError::Config(format!("member: {e}")))?;
        if self.community.trim().is_empty() {
            return Err(CoreError::Config("community: must not be empty".into()));
        }
        let edge_node = NodeId::from_hex(&self.edge_node)
            .ok_or_else(|| CoreError::Config("edge_node: not a node id (64 hex digits)".into()))?;
        let operator = NodeId::from_hex(&self.operator)
            .ok_or_else(|| CoreError::Config("operator: not a node id (64 hex digits)".into()))?
            .0;
        if self.min_members < pb_units::limits::MIN_BILLABLE_MEMBERS {
            return Err(CoreError::Config(format!(
                "min_members: must be at least {}",
                pb_units::limits::MIN_BILLABLE_MEMBERS
            )));
        }
        if self.poll_millis == 0 || self.request_timeout_millis == 0 {
            return Err(CoreError::Config(
                "poll_millis and request_timeout_millis must be positive".into(),
            ));
        }
        Ok(Checked {
            member,
            community: CommunityId(self.community.clone()),
            edge_node,
            operator,
            min_members: self.min_members,
            poll: Duration::from_millis(self.poll_millis),
            timeout: Duration::from_millis(self.request_timeout_millis),
        })
    }
}
