//! The edge's Prometheus metrics, fed from the transport loop: each request
//! is counted by its kind and outcome from the frames that went in and out
//! (only the variant tags are read, from the payload borrowed in place: a
//! large submission is neither decoded a second time nor copied; about
//! 0.3 µs a request for a 96 kB frame), billed cycles from the service's
//! records.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pb_metrics::{Daemon, Exporter, Metrics, Outcome};
use pb_protocol::{Binding, MAX_FRAME, NodeId};
use pb_units::CycleId;

use crate::{EdgeError, Service};

/// [`pb_protocol::Request`]'s variants in declaration order (bincode
/// encodes a variant as its index).
const REQUEST_KINDS: [&str; 18] = [
    "Join",
    "GetMembers",
    "PutContext",
    "GetCycle",
    "Submit",
    "GetBill",
    "PutRoster",
    "GetRoster",
    "Advertise",
    "GetBundles",
    "Share",
    "GetShares",
    "GetSurvivors",
    "Confirm",
    "GetConfirmations",
    "Reveal",
    "Status",
    "RotateKey",
];

/// Index of [`pb_protocol::Response::Error`].
const RESPONSE_ERROR: u32 = 10;

/// [`pb_protocol::ErrorCode`]'s variants in declaration order.
const ERROR_CODES: [&str; 12] = [
    "BadFrame",
    "BadSignature",
    "Misdirected",
    "Replay",
    "NotEnrolled",
    "Forbidden",
    "UnknownCycle",
    "Rejected",
    "NotReady",
    "RateLimited",
    "AlreadyDone",
    "Internal",
];

/// The fields of an [`Envelope`] up to its payload, which is borrowed
/// from the frame rather than copied (the signature after it is not read).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // decoded for their place in the frame, never read
struct EnvelopeView<'a> {
    version: u16,
    sender: NodeId,
    counter: u64,
    binding: Binding,
    #[serde(borrow)]
    payload: &'a [u8],
}

/// The envelope's payload, unverified (for counting only): the frame is
/// a 4-byte magic, then the bincode of an [`Envelope`].
fn payload(frame: &[u8]) -> Option<&[u8]> {
    let cfg = bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<MAX_FRAME>();
    bincode::serde::borrow_decode_from_slice::<EnvelopeView<'_>, _>(frame.get(4..)?, cfg)
        .ok()
        .map(|(e, _)| e.payload)
}

fn tag(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The kind of request in a frame as received: its variant's name, or
/// `unknown` when the frame does not decode.
pub fn request_kind(frame: &[u8]) -> &'static str {
    payload(frame)
        .and_then(|p| tag(p, 0))
        .and_then(|t| REQUEST_KINDS.get(usize::try_from(t).ok()?).copied())
        .unwrap_or("unknown")
}

/// How the edge's sealed answer ended: a refusal with its error code's
/// name, else ok.
pub fn outcome(answer: &[u8]) -> Outcome {
    let Some(p) = payload(answer) else {
        return Outcome::Refused("Internal");
    };
    if tag(p, 0) != Some(RESPONSE_ERROR) {
        return Outcome::Ok;
    }
    let code = tag(p, 4)
        .and_then(|t| ERROR_CODES.get(usize::try_from(t).ok()?).copied())
        .unwrap_or("Internal");
    Outcome::Refused(code)
}

/// The edge's metrics and their HTTP endpoint.
pub struct EdgeMetrics {
    metrics: Arc<Metrics>,
    exporter: Exporter,
    /// Cycles whose billing is already counted (or predates this process).
    seen: BTreeSet<CycleId>,
}

impl std::fmt::Debug for EdgeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeMetrics")
            .field("addr", &self.exporter.local_addr())
            .finish()
    }
}

impl EdgeMetrics {
    /// Serves the metrics of `service` (whose store is in `data_dir`) on
    /// `addr`; cycles billed before now are not counted again.
    pub fn start(addr: &str, data_dir: &Path, service: &Service) -> Result<EdgeMetrics, EdgeError> {
        let metrics = Arc::new(Metrics::new(Daemon::Edge, Some(data_dir.join("edge.redb"))));
        let exporter = Exporter::start(addr, metrics.clone())?;
        let mut m = EdgeMetrics {
            metrics,
            exporter,
            seen: service.billed_cycles().map(|(c, _)| c).collect(),
        };
        m.refresh(service);
        Ok(m)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.exporter.local_addr()
    }

    /// Counts one request (`frame` in, `answer` out) and what it changed.
    pub fn request(&mut self, frame: &[u8], oversized: bool, answer: &[u8], service: &Service) {
        let kind = if oversized {
            "unknown"
        } else {
            request_kind(frame)
        };
        let outcome = outcome(answer);
        self.metrics.request(kind, outcome);
        if kind == "Submit" && outcome == Outcome::Ok {
            self.metrics.submission();
        }
        self.refresh(service);
    }

    /// Picks up cycles billed since the last call and the gauges.
    pub fn refresh(&mut self, service: &Service) {
        let view = service.metrics_view();
        self.metrics.set_members(view.members);
        self.metrics.set_open_cycles(view.open_cycles);
        if view.billed_cycles == self.seen.len() {
            return;
        }
        let backend = service.backend_name();
        for (cycle, record) in service.billed_cycles() {
            if self.seen.insert(cycle) {
                self.metrics.cycle_billed(
                    backend,
                    Duration::from_millis(record.millis),
                    record.bills as u64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb_glwe::SecretKey;
    use pb_glwe::seeding::deterministic;
    use pb_hiding::HiddenData;
    use pb_model::{BillingModel, CycleContext};
    use pb_protocol::{Audience, Envelope, ErrorCode, NodeKey, Request, RequestHash, Response};
    use pb_units::{CommunityId, MemberId, PriceUnits, SlotCount};

    /// Exhaustive, so that a new request variant breaks this test until
    /// the table knows it.
    fn name(r: &Request) -> &'static str {
        match r {
            Request::Join { .. } => "Join",
            Request::GetMembers => "GetMembers",
            Request::PutContext(_) => "PutContext",
            Request::GetCycle { .. } => "GetCycle",
            Request::Submit { .. } => "Submit",
            Request::GetBill { .. } => "GetBill",
            Request::PutRoster(_) => "PutRoster",
            Request::GetRoster { .. } => "GetRoster",
            Request::Advertise { .. } => "Advertise",
            Request::GetBundles { .. } => "GetBundles",
            Request::Share { .. } => "Share",
            Request::GetShares { .. } => "GetShares",
            Request::GetSurvivors { .. } => "GetSurvivors",
            Request::Confirm { .. } => "Confirm",
            Request::GetConfirmations { .. } => "GetConfirmations",
            Request::Reveal { .. } => "Reveal",
            Request::Status { .. } => "Status",
            Request::RotateKey { .. } => "RotateKey",
        }
    }

    fn every_request() -> Vec<Request> {
        let member = MemberId::new("m").unwrap();
        let ctx = CycleContext::new(
            CycleId(1),
            BillingModel::Ucs,
            vec![PriceUnits(1); 2],
            vec![PriceUnits(2); 2],
            vec![PriceUnits(1); 2],
        )
        .unwrap();
        vec![
            Request::Join {
                member: member.clone(),
                przs: pb_przs::IdentityKey::from_bytes([3; 32]).public(),
                public_key: SecretKey::generate(&mut deterministic(1))
                    .public_key(&mut deterministic(2)),
            },
            Request::GetMembers,
            Request::PutContext(ctx),
            Request::GetCycle { cycle: CycleId(1) },
            Request::Submit {
                data: HiddenData {
                    member: member.clone(),
                    community: CommunityId("c".into()),
                    cycle: CycleId(1),
                    model: BillingModel::Ucs,
                    slots: SlotCount::new(2).unwrap(),
                    masked: vec![vec![1, 2]; 3],
                    ciphertexts: Vec::new(),
                },
                partners: Vec::new(),
            },
            Request::GetBill { cycle: CycleId(1) },
        ]
        .into_iter()
        .chain(secagg_requests())
        .chain([
            Request::Status { cycle: None },
            Request::RotateKey {
                new_node: NodeKey::from_bytes([4; 32]).id(),
                proof: vec![0; 64],
            },
        ])
        .collect()
    }

    /// One of each SecAgg+ request, from a real three-member round.
    fn secagg_requests() -> Vec<Request> {
        use pb_secagg::{Client, Roster, RosterEntry, SignedRoster};
        let cycle = CycleId(1);
        let keys: Vec<NodeKey> = (0..3u8)
            .map(|i| NodeKey::from_bytes([i + 10; 32]))
            .collect();
        let operator = NodeKey::from_bytes([20; 32]);
        let roster = Roster::new(
            "c",
            1,
            keys.iter()
                .enumerate()
                .map(|(i, k)| RosterEntry {
                    member: MemberId::new(format!("m{i}")).unwrap(),
                    identity: k.id().0,
                })
                .collect(),
        )
        .unwrap();
        let signed = SignedRoster::sign(roster, operator.signing_key());
        let mut rng = rand_core::OsRng;
        let mut clients: Vec<Client> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Client::start(
                    &signed,
                    &operator.id().0,
                    3,
                    1,
                    &MemberId::new(format!("m{i}")).unwrap(),
                    k.signing_key(),
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        let bundles: Vec<_> = clients.iter().map(|c| c.bundle().clone()).collect();
        let others = |i: usize| -> Vec<_> {
            bundles
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, b)| b.clone())
                .collect()
        };
        let shares = clients[0].share(&others(0), &mut rng).unwrap();
        let page = pb_protocol::RosterPage::split(&signed).remove(0);
        let confirmation = pb_secagg::Confirmation {
            member: MemberId::new("m0").unwrap(),
            set: [0; 32],
            signature: vec![0; 64],
        };
        let reveal = pb_secagg::Reveal {
            member: MemberId::new("m0").unwrap(),
            set: [0; 32],
            answers: Vec::new(),
        };
        drop(clients.pop());
        vec![
            Request::PutRoster(page),
            Request::GetRoster {
                version: None,
                page: 0,
            },
            Request::Advertise {
                cycle,
                bundle: bundles[0].clone(),
            },
            Request::GetBundles { cycle },
            Request::Share { cycle, shares },
            Request::GetShares { cycle },
            Request::GetSurvivors { cycle },
            Request::Confirm {
                cycle,
                confirmation,
            },
            Request::GetConfirmations { cycle },
            Request::Reveal { cycle, reveal },
        ]
    }

    #[test]
    fn request_kinds_are_read_from_sealed_frames() {
        let key = NodeKey::from_bytes([1; 32]);
        let to = Audience {
            edge: NodeKey::from_bytes([2; 32]).id(),
            community: CommunityId("c".into()),
        };
        let all = every_request();
        assert_eq!(all.len(), REQUEST_KINDS.len());
        for r in &all {
            let frame = Envelope::seal_request(&key, 7, &to, r);
            assert_eq!(request_kind(&frame), name(r));
        }
        assert_eq!(request_kind(b""), "unknown");
        assert_eq!(request_kind(&[0xff; 100]), "unknown");
    }

    #[test]
    fn outcomes_name_every_error_code() {
        let key = NodeKey::from_bytes([1; 32]);
        let seal = |r: &Response| Envelope::seal_response(&key, 1, RequestHash::of(b"x"), r);
        let codes = [
            ErrorCode::BadFrame,
            ErrorCode::BadSignature,
            ErrorCode::Misdirected,
            ErrorCode::Replay,
            ErrorCode::NotEnrolled,
            ErrorCode::Forbidden,
            ErrorCode::UnknownCycle,
            ErrorCode::Rejected,
            ErrorCode::NotReady,
            ErrorCode::RateLimited,
            ErrorCode::AlreadyDone,
            ErrorCode::Internal,
        ];
        assert_eq!(codes.len(), ERROR_CODES.len());
        for code in codes {
            let answer = seal(&Response::Error {
                code,
                message: "no".into(),
            });
            assert_eq!(
                outcome(&answer),
                Outcome::Refused(format!("{code:?}").leak())
            );
        }
        assert_eq!(outcome(&seal(&Response::Ok)), Outcome::Ok);
        assert_eq!(
            outcome(&seal(&Response::Pending {
                round: pb_secagg::Round::Mask,
                waiting: 1,
            })),
            Outcome::Ok
        );
    }
}
