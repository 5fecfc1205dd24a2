//! The edge's configuration file (TOML) and the admission list in it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use pb_protocol::NodeId;
use pb_units::{CommunityId, MemberId};
use serde::{Deserialize, Serialize};

use crate::EdgeError;

/// One admitted core: the member it speaks for and its signing identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// Member id.
    pub member: String,
    /// The core's node id (64 hex digits, printed by `pbill keygen`).
    pub node: String,
}

/// `edge.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Community name (part of every PRZS key derivation).
    pub community: String,
    /// ZeroMQ endpoint the cores and the operator connect to.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of the edge's store.
    pub data_dir: PathBuf,
    /// The edge's signing key (written by `pbill keygen`).
    pub key_file: PathBuf,
    /// Fewest members billed together.
    #[serde(default = "default_min_members")]
    pub min_members: usize,
    /// Seconds after a cycle's context is recorded at which its advertise
    /// round closes: members whose core has not advertised by then (it
    /// does once the household's data is in) take no part in the cycle.
    #[serde(default = "default_deadline")]
    pub dropout_deadline_secs: u64,
    /// Seconds each later round (share, mask) waits for members still
    /// missing before it closes without them (they are then dropouts).
    #[serde(default = "default_round_secs")]
    pub round_secs: u64,
    /// Node ids allowed to send cycle contexts.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Admitted cores.
    #[serde(default)]
    pub members: Vec<Enrollment>,
    /// Abuse limits (`[limits]`; every field optional).
    #[serde(default)]
    pub limits: Limits,
    /// Address (`IP:PORT`) of the Prometheus metrics endpoint
    /// (`http://IP:PORT/metrics`); off when absent.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Most members a cycle may have (the edge's memory and disk are sized
    /// for it); at least `min_members`, at most
    /// `pb_units::limits::MAX_MEMBERS`.
    #[serde(default = "default_max_members")]
    pub max_members: usize,
    /// How long billed cycles' data is kept (`[retention]`; every field
    /// optional).
    #[serde(default)]
    pub retention: Retention,
    /// The store's page cache in MiB (redb's; the operating system caches
    /// the file as well). The edge reads a cycle once, batch by batch, so
    /// a larger cache buys little and is most of the edge's memory.
    #[serde(default = "default_store_cache_mib")]
    pub store_cache_mib: usize,
}

/// `store_cache_mib` unless configured.
pub const DEFAULT_STORE_CACHE_MIB: usize = 32;

fn default_store_cache_mib() -> usize {
    DEFAULT_STORE_CACHE_MIB
}

/// `max_members` unless configured.
pub const DEFAULT_MAX_MEMBERS: usize = 100_000;

fn default_max_members() -> usize {
    DEFAULT_MAX_MEMBERS
}

/// `[retention]` of `edge.toml`: what the edge deletes once a cycle is
/// billed (`EdgeStore::prune`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Billed cycles whose submissions (and round events) are kept
    /// for audit, the most recent ones; older billed cycles' submissions are
    /// deleted. 0: deleted as soon as the cycle's bills are stored.
    pub keep_submissions_cycles: usize,
    /// Seconds a delivered bill is kept after its first delivery (a core
    /// whose reply was lost fetches it again meanwhile); then it is
    /// deleted. At least 60.
    pub keep_bills_secs_after_delivery: u64,
}

/// Most billed cycles whose submissions may be kept.
pub const MAX_KEEP_SUBMISSIONS_CYCLES: usize = 10_000;
/// Fewest seconds a delivered bill is kept.
pub const MIN_KEEP_BILLS_SECS: u64 = 60;

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_submissions_cycles: 0,
            keep_bills_secs_after_delivery: 30 * 24 * 3600,
        }
    }
}

impl Retention {
    /// Checks the retention's bounds.
    pub fn check(&self) -> Result<(), EdgeError> {
        if self.keep_submissions_cycles > MAX_KEEP_SUBMISSIONS_CYCLES {
            return Err(EdgeError::Config(format!(
                "retention.keep_submissions_cycles: at most {MAX_KEEP_SUBMISSIONS_CYCLES}"
            )));
        }
        if self.keep_bills_secs_after_delivery < MIN_KEEP_BILLS_SECS {
            return Err(EdgeError::Config(format!(
                "retention.keep_bills_secs_after_delivery: at least {MIN_KEEP_BILLS_SECS} (a \
                 core whose reply was lost must be able to fetch its bill again)"
            )));
        }
        Ok(())
    }
}

/// `[limits]` of `edge.toml`: what one peer may cost the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most connections at once (each costs the edge three file
    /// descriptors: raise `ulimit -n` to match).
    pub max_connections: usize,
    /// Most connections at once from one IP address.
    pub max_connections_per_address: usize,
    /// Seconds a peer has to finish sending a request once it started one
    /// (and to finish the connection's greeting); slower peers are cut off.
    pub message_timeout_secs: u64,
    /// Seconds of silence after which a connection is closed.
    pub idle_timeout_secs: u64,
    /// Sustained requests per second one enrolled node may send; beyond
    /// it requests are answered `RateLimited` and change nothing.
    pub requests_per_sec: u32,
    /// Requests one node may send at once above the sustained rate.
    pub request_burst: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_connections_per_address: 256,
            message_timeout_secs: 10,
            idle_timeout_secs: 3600,
            requests_per_sec: 20,
            request_burst: 60,
        }
    }
}

impl Limits {
    /// Checks that every limit is positive.
    pub fn check(&self) -> Result<(), EdgeError> {
        let zero = [
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            ("message_timeout_secs", self.message_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("requests_per_sec", u64::from(self.requests_per_sec)),
            ("request_burst", u64::from(self.request_burst)),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        match zero {
            Some((name, _)) => Err(EdgeError::Config(format!(
                "limits.{name}: must be at least 1"
            ))),
            None => Ok(()),
        }
    }

    /// The socket guard's limits for the edge's requests.
    pub fn guard(&self) -> pb_net::GuardLimits {
        let mut g = pb_net::GuardLimits::new(pb_net::MAX_WIRE, pb_net::MAX_PARTS);
        g.max_connections = self.max_connections;
        g.max_per_address = self.max_connections_per_address;
        g.greeting_timeout = std::time::Duration::from_secs(self.message_timeout_secs);
        g.message_timeout = std::time::Duration::from_secs(self.message_timeout_secs);
        g.idle_timeout = std::time::Duration::from_secs(self.idle_timeout_secs);
        g
    }
}

fn default_listen() -> String {
    "tcp://127.0.0.1:5555".into()
}

fn default_min_members() -> usize {
    pb_units::limits::DEFAULT_MIN_MEMBERS
}

fn default_deadline() -> u64 {
    900
}

fn default_round_secs() -> u64 {
    60
}

/// Who may do what: the configuration's enrolments, overridden by the
/// members' key rotations ([`Admission::apply_rotations`]).
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Operators.
    pub operators: BTreeSet<NodeId>,
    /// Admitted cores and their members.
    pub members: BTreeMap<NodeId, MemberId>,
    /// Keys that members rotated away from, by old node id: refused
    /// everywhere, never admitted again.
    pub retired: BTreeMap<NodeId, Rotation>,
}

/// A member's key rotation as the edge records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The member.
    pub member: MemberId,
    /// The node it rotated away from (retired from then on).
    pub from: NodeId,
    /// The node that speaks for it since.
    pub to: NodeId,
    /// Unix seconds of the rotation.
    pub at: u64,
}

impl Rotation {
    /// Why a request signed by the retired key is refused.
    pub fn refusal(&self) -> String {
        format!(
            "node {} is retired: member {} rotated its key to node {} at {} (unix seconds); the old key is refused everywhere, the member's core speaks with the new key",
            self.from.to_hex(),
            self.member,
            self.to.to_hex(),
            self.at
        )
    }
}

/// A sender's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// May post cycle contexts and read cycles.
    Operator,
    /// The core of this member.
    Member(MemberId),
}

impl Admission {
    /// The role of a sender, if admitted.
    pub fn role(&self, node: &NodeId) -> Option<Role> {
        if let Some(m) = self.members.get(node) {
            return Some(Role::Member(m.clone()));
        }
        self.operators.contains(node).then_some(Role::Operator)
    }

    /// Every admitted node (operators and cores).
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.operators.iter().chain(self.members.keys()).copied()
    }

    /// The rotation that retired `node`, if any.
    pub fn retired(&self, node: &NodeId) -> Option<&Rotation> {
        self.retired.get(node)
    }

    /// Whether `node` is admitted (operator or core) or retired: a key a
    /// member may not rotate to.
    pub fn is_known(&self, node: &NodeId) -> bool {
        self.role(node).is_some() || self.retired.contains_key(node)
    }

    /// Records a rotation: `rotation.from` is retired and `rotation.to`
    /// speaks for the member.
    pub fn rotate(&mut self, rotation: Rotation) {
        self.members.remove(&rotation.from);
        self.members.insert(rotation.to, rotation.member.clone());
        self.retired.insert(rotation.from, rotation);
    }

    /// Applies the stored rotations to the configuration's enrolments: a
    /// member enrolled with a key it rotated away from (directly or
    /// through several rotations) is admitted with its latest key; one
    /// enrolled with its latest key, or with a key outside its rotations
    /// (the operator re-enrolled it), keeps it. Every rotated-away key is
    /// retired. A key enrolled for a member that another member retired
    /// is refused.
    pub fn apply_rotations(&mut self, rotations: Vec<Rotation>) -> Result<(), EdgeError> {
        for r in rotations {
            self.retired.insert(r.from, r);
        }
        let enrolled = std::mem::take(&mut self.members);
        for (node, member) in enrolled {
            let mut current = node;
            // Each rotation moves to a key never admitted nor retired
            // before, so a chain is at most as long as the rotations.
            let mut steps = 0;
            while let Some(r) = self.retired.get(&current) {
                if r.member != member || steps > self.retired.len() {
                    return Err(EdgeError::Config(format!(
                        "members: {member} is enrolled with node {}, which member {} rotated away from (stored rotation): enrol {member} with a key of its own",
                        node.to_hex(),
                        r.member
                    )));
                }
                current = r.to;
                steps += 1;
            }
            if current != node {
                tracing::info!(%member, enrolled = %node, current = %current, "member admitted with its rotated key");
            }
            if self.operators.contains(&current)
                || self.members.insert(current, member.clone()).is_some()
            {
                return Err(EdgeError::Config(format!(
                    "members: {member}'s rotated key {} is also enrolled for another node",
                    current.to_hex()
                )));
            }
        }
        Ok(())
    }
}

/// The transport keys the edge admits now, shared between the service
/// (which updates it when a member rotates its key) and the transport's
/// handshakes (which read it through [`TransportAdmission::authorize`]):
/// a rotation takes effect at the next handshake, without a restart.
#[derive(Debug, Clone, Default)]
pub struct TransportAdmission(Arc<RwLock<TransportKeys>>);

#[derive(Debug, Default)]
struct TransportKeys {
    /// X25519 keys of every admitted node.
    admitted: HashSet<[u8; 32]>,
    /// X25519 keys of retired nodes, with the reason they are refused.
    retired: HashMap<[u8; 32], String>,
}

fn transport_key(node: &NodeId) -> Result<[u8; 32], EdgeError> {
    node.transport_public().ok_or_else(|| {
        EdgeError::Config(format!(
            "admission: node id {} has no X25519 transport key (not a valid Ed25519 key)",
            node.to_hex()
        ))
    })
}

impl TransportAdmission {
    /// The transport keys of `admission`'s nodes; every admitted node id
    /// must be a valid Ed25519 key.
    pub fn new(admission: &Admission) -> Result<TransportAdmission, EdgeError> {
        let mut keys = TransportKeys::default();
        for node in admission.nodes() {
            keys.admitted.insert(transport_key(&node)?);
        }
        for (node, r) in &admission.retired {
            if let Some(k) = node.transport_public() {
                keys.retired.insert(k, r.refusal());
            }
        }
        Ok(TransportAdmission(Arc::new(RwLock::new(keys))))
    }

    /// Takes a rotation into account: the old node's transport key is
    /// refused (with the rotation named), the new one admitted.
    pub fn rotate(&self, r: &Rotation) -> Result<(), EdgeError> {
        let to = transport_key(&r.to)?;
        let mut keys = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(from) = r.from.transport_public() {
            keys.admitted.remove(&from);
            keys.retired.insert(from, r.refusal());
        }
        keys.admitted.insert(to);
        Ok(())
    }

    /// Whether a client with transport key `key` may open a session, and
    /// why not.
    pub fn check(&self, key: &[u8; 32]) -> Result<(), String> {
        let keys = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if keys.admitted.contains(key) {
            return Ok(());
        }
        Err(keys
            .retired
            .get(key)
            .cloned()
            .unwrap_or_else(|| pb_net::secure::NOT_ENROLLED.to_string()))
    }

    /// The handshake's check, for [`pb_net::ServerKeys::with_authorize`].
    pub fn authorize(&self) -> pb_net::Authorize {
        let this = self.clone();
        Arc::new(move |key| this.check(key))
    }
}

impl EdgeConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<EdgeConfig, EdgeError> {
        let text = pb_inputs::bounded_text(path, pb_inputs::Kind::EdgeConfig)
            .map_err(|e| EdgeError::Config(e.to_string()))?;
        let config: EdgeConfig = toml::from_str(&text)
            .map_err(|e| EdgeError::Config(format!("{}: {e}", path.display())))?;
        config.admission()?;
        config.limits.check()?;
        config.check_capacity()?;
        Ok(config)
    }

    /// Checks `max_members` (between `min_members` and
    /// `pb_units::limits::MAX_MEMBERS`), `store_cache_mib` (1 to 65,536)
    /// and `[retention]`.
    pub fn check_capacity(&self) -> Result<(), EdgeError> {
        if !(1..=65_536).contains(&self.store_cache_mib) {
            return Err(EdgeError::Config(format!(
                "store_cache_mib: {} is not between 1 and 65536",
                self.store_cache_mib
            )));
        }
        let max = pb_units::limits::MAX_MEMBERS;
        if self.max_members < self.min_members || self.max_members > max {
            return Err(EdgeError::Config(format!(
                "max_members: {} is not between min_members ({}) and {max}",
                self.max_members, self.min_members
            )));
        }
        if self.round_secs == 0 || self.dropout_deadline_secs == 0 {
            return Err(EdgeError::Config(
                "round_secs and dropout_deadline_secs: must be at least 1 (a round that closes as it opens would leave every member out)".into(),
            ));
        }
        self.retention.check()
    }

    /// The community id.
    pub fn community_id(&self) -> Result<CommunityId, EdgeError> {
        if self.community.trim().is_empty() {
            return Err(EdgeError::Config("community: must not be empty".into()));
        }
        Ok(CommunityId(self.community.clone()))
    }

    /// Parses and checks the admission lists (no id or node twice, valid
    /// hex, no node both operator and member).
    pub fn admission(&self) -> Result<Admission, EdgeError> {
        let mut a = Admission::default();
        for (i, op) in self.operators.iter().enumerate() {
            let id = NodeId::from_hex(op).ok_or_else(|| {
                EdgeError::Config(format!("operators[{i}]: not a node id (64 hex digits)"))
            })?;
            a.operators.insert(id);
        }
        let mut seen = BTreeSet::new();
        for (i, e) in self.members.iter().enumerate() {
            let member = MemberId::new(e.member.clone())
                .map_err(|err| EdgeError::Config(format!("members[{i}].member: {err}")))?;
            let node = NodeId::from_hex(&e.node).ok_or_else(|| {
                EdgeError::Config(format!("members[{i}].node: not a node id (64 hex digits)"))
            })?;
            if !seen.insert(member.clone()) {
                return Err(EdgeError::Config(format!(
                    "members[{i}].member: {member} is enrolled twice"
                )));
            }
            if a.operators.contains(&node) || a.members.insert(node, member).is_some() {
                return Err(EdgeError::Config(format!(
                    "members[{i}].node: this node is already enrolled"
                )));
            }
        }
        if self.min_members < pb_units::limits::MIN_BILLABLE_MEMBERS {
            return Err(EdgeError::Config(format!(
                "min_members: must be at least {}",
                pb_units::limits::MIN_BILLABLE_MEMBERS
            )));
        }
        self.community_id()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> EdgeConfig {
        toml::from_str(
            r#"
            community = "c"
            data_dir = "d"
            key_file = "k"
            operators = ["0101010101010101010101010101010101010101010101010101010101010101"]
            [[members]]
            member = "alice"
            node = "0202020202020202020202020202020202020202020202020202020202020202"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn admission_parses_roles() {
        let a = base().admission().unwrap();
        assert_eq!(a.role(&NodeId([1; 32])), Some(Role::Operator));
        assert_eq!(
            a.role(&NodeId([2; 32])),
            Some(Role::Member(MemberId::new("alice").unwrap()))
        );
        assert_eq!(a.role(&NodeId([3; 32])), None);
    }

    fn rotation(member: &str, from: u8, to: u8) -> Rotation {
        Rotation {
            member: MemberId::new(member).unwrap(),
            from: NodeId([from; 32]),
            to: NodeId([to; 32]),
            at: 1,
        }
    }

    /// Stored rotations override the configuration's enrolment of the
    /// same key (through a chain of rotations), retire the old keys, and
    /// leave a member the operator re-enrolled with another key alone.
    #[test]
    fn stored_rotations_override_the_enrolled_key() {
        let alice = Role::Member(MemberId::new("alice").unwrap());
        let mut a = base().admission().unwrap();
        a.apply_rotations(vec![rotation("alice", 2, 4), rotation("alice", 4, 5)])
            .unwrap();
        assert_eq!(a.role(&NodeId([5; 32])), Some(alice.clone()));
        assert_eq!(a.role(&NodeId([2; 32])), None);
        assert_eq!(a.role(&NodeId([4; 32])), None);
        assert_eq!(a.retired(&NodeId([2; 32])).unwrap().to, NodeId([4; 32]));
        assert!(a.is_known(&NodeId([4; 32])));
        assert!(
            a.retired(&NodeId([2; 32]))
                .unwrap()
                .refusal()
                .contains("rotated")
        );

        // edge.toml already names the latest key: the same admission.
        let mut c = base();
        c.members[0].node = NodeId([5; 32]).to_hex();
        let mut a = c.admission().unwrap();
        a.apply_rotations(vec![rotation("alice", 2, 4), rotation("alice", 4, 5)])
            .unwrap();
        assert_eq!(a.role(&NodeId([5; 32])), Some(alice.clone()));

        // Re-enrolled by the operator with a fresh key: that key stays.
        let mut c = base();
        c.members[0].node = NodeId([6; 32]).to_hex();
        let mut a = c.admission().unwrap();
        a.apply_rotations(vec![rotation("alice", 2, 4)]).unwrap();
        assert_eq!(a.role(&NodeId([6; 32])), Some(alice));
        assert_eq!(a.role(&NodeId([4; 32])), None);

        // A key another member retired cannot be enrolled for alice.
        let mut a = base().admission().unwrap();
        let e = a
            .apply_rotations(vec![rotation("bob", 2, 4)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rotated away"), "{e}");
    }

    #[test]
    fn bad_admission_lists_name_the_entry() {
        let mut c = base();
        c.members.push(c.members[0].clone());
        assert!(
            c.admission()
                .unwrap_err()
                .to_string()
                .contains("members[1]")
        );
        let mut c = base();
        c.members[0].node = "zz".into();
        assert!(
            c.admission()
                .unwrap_err()
                .to_string()
                .contains("members[0].node")
        );
        let mut c = base();
        c.members[0].node = c.operators[0].clone();
        assert!(c.admission().is_err());
        assert!(toml::from_str::<EdgeConfig>("community = 1").is_err());
        let mut c = base();
        c.limits.requests_per_sec = 0;
        assert!(
            c.limits
                .check()
                .unwrap_err()
                .to_string()
                .contains("limits.requests_per_sec")
        );
        let c: EdgeConfig = toml::from_str(
            "community = \"c\"\ndata_dir = \"d\"\nkey_file = \"k\"\n[limits]\nrequest_burst = 5\n",
        )
        .unwrap();
        assert_eq!(c.limits.request_burst, 5);
        assert_eq!(c.limits.requests_per_sec, 20);
        assert_eq!(c.metrics, None);
        let c: EdgeConfig = toml::from_str(
            "community = \"c\"\ndata_dir = \"d\"\nkey_file = \"k\"\nmetrics = \"127.0.0.1:9464\"\n",
        )
        .unwrap();
        assert_eq!(c.metrics.as_deref(), Some("127.0.0.1:9464"));
        assert!(
            toml::from_str::<EdgeConfig>(
                "community = \"c\"\ndata_dir = \"d\"\nkey_file = \"k\"\nmetrics = 9464\n"
            )
            .is_err()
        );
    }

    #[test]
    fn capacity_and_retention_have_defaults_and_refuse_bad_values() {
        let c = base();
        assert_eq!(c.max_members, DEFAULT_MAX_MEMBERS);
        assert_eq!(c.retention, Retention::default());
        c.check_capacity().unwrap();
        let c: EdgeConfig = toml::from_str(
            "community = \"c\"\ndata_dir = \"d\"\nkey_file = \"k\"\nmax_members = 500\n\
             [retention]\nkeep_submissions_cycles = 2\n",
        )
        .unwrap();
        assert_eq!(c.max_members, 500);
        assert_eq!(c.retention.keep_submissions_cycles, 2);
        assert_eq!(
            c.retention.keep_bills_secs_after_delivery,
            Retention::default().keep_bills_secs_after_delivery
        );
        c.check_capacity().unwrap();

        let refused = |c: &EdgeConfig, key: &str| {
            let e = c.check_capacity().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        let mut c = base();
        assert_eq!(c.store_cache_mib, DEFAULT_STORE_CACHE_MIB);
        for bad in [0, 65_537] {
            c.store_cache_mib = bad;
            refused(&c, "store_cache_mib");
        }
        let mut c = base();
        assert_eq!(c.round_secs, 60);
        c.round_secs = 0;
        refused(&c, "round_secs");
        let mut c = base();
        c.dropout_deadline_secs = 0;
        refused(&c, "dropout_deadline_secs");
        let mut c = base();
        c.max_members = 2;
        refused(&c, "max_members");
        c.max_members = pb_units::limits::MAX_MEMBERS + 1;
        refused(&c, "max_members");
        let mut c = base();
        c.retention.keep_bills_secs_after_delivery = 0;
        refused(&c, "retention.keep_bills_secs_after_delivery");
        let mut c = base();
        c.retention.keep_submissions_cycles = MAX_KEEP_SUBMISSIONS_CYCLES + 1;
        refused(&c, "retention.keep_submissions_cycles");
        // Unknown keys and wrong types are refused when parsing.
        for bad in [
            "[retention]\nkeep_cycles = 1\n",
            "[retention]\nkeep_submissions_cycles = -1\n",
            "max_members = \"many\"\n",
        ] {
            let text = format!("community = \"c\"\ndata_dir = \"d\"\nkey_file = \"k\"\n{bad}");
            assert!(toml::from_str::<EdgeConfig>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_refuses_a_file_with_bad_capacity() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("edge.toml");
        std::fs::write(
            &path,
            "community = \"c\"\ndata_dir = \"d\"\nkey_file = \"k\"\nmax_members = 1\n",
        )
        .unwrap();
        let e = EdgeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("max_members"), "{e}");
    }
}
