//! Key rotation over real sockets: a member replaces its node key between
//! cycles with `RotateKey`, sent in an envelope signed by its current
//! (enrolled) key and carrying the new key's proof. From then on the new
//! key speaks for the member (handshake and envelopes) and the old one is
//! refused everywhere, with the rotation named; the operator's next member
//! list names the new key and the next cycle bills the member exactly.
//! Rotations that must not happen (bad proof, a key in use, a revoked
//! member, a cycle in its rounds, an attacker with one of the two keys)
//! change nothing, and a rotation survives an edge restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Member, context, data, edge_config};
use pb_edge::EdgeConfig;
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_model::{Data, reference};
use pb_net::{Connection, EdgeClient, NetError};
use pb_protocol::{ErrorCode, NodeKey, Request, Response, rotation_proof};
use pb_przs::IdentityKey;
use pb_shared_billing::CpuBackend;
use pb_units::{CommunityId, CycleId, MemberId};

const COMMUNITY: &str = "rotate";

/// An edge with four enrolled members (`k0`..`k3`) that have joined, and
/// the operator's member list version 1 naming all four.
struct Community {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    edge_key: NodeKey,
    operator: NodeKey,
    members: Vec<Member>,
    config: EdgeConfig,
    edge: Option<(pb_edge::Running, Arc<AtomicBool>)>,
}

fn member(i: u8) -> Member {
    Member {
        key: NodeKey::from_bytes([i + 1; 32]),
        hiding: None,
        przs: IdentityKey::from_bytes([i + 60; 32]),
        glwe: SecretKey::generate(&mut deterministic(u128::from(i) + 70)).into(),
        id: MemberId::new(format!("k{i}")).unwrap(),
    }
}

impl Community {
    fn new() -> Community {
        let dir = tempfile::tempdir().unwrap();
        let edge_key = NodeKey::from_bytes([9; 32]);
        edge_key.write_new(&dir.path().join("edge.key")).unwrap();
        let operator = NodeKey::from_bytes([8; 32]);
        let members: Vec<Member> = (0..4u8).map(member).collect();
        let config = edge_config(dir.path(), COMMUNITY, &operator, &members, 3600);
        let mut c = Community {
            dir,
            rt: tokio::runtime::Runtime::new().unwrap(),
            edge_key,
            operator,
            members,
            config,
            edge: None,
        };
        c.start();
        for m in &c.members {
            let join = Request::Join {
                member: m.id.clone(),
                przs: m.przs.public(),
                public_key: m.glwe.public_key(&mut deterministic(5)),
            };
            assert_eq!(c.call(&mut c.client(&m.key), &join), Response::Ok);
        }
        let all: Vec<&Member> = c.members.iter().collect();
        let v1 = common::signed_roster(COMMUNITY, 1, &c.operator, &all);
        assert_eq!(c.post(&v1), Response::Ok);
        c
    }

    /// Starts (or restarts) the edge on its store, with edge.toml as it
    /// was written (the members' first keys).
    fn start(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let running = pb_edge::spawn(
            self.rt.handle(),
            &self.config,
            Box::new(CpuBackend::new()),
            stop.clone(),
        )
        .unwrap();
        self.edge = Some((running, stop));
    }

    fn stop(&mut self) {
        if let Some((running, stop)) = self.edge.take() {
            stop.store(true, Ordering::Relaxed);
            running.join();
        }
    }

    fn endpoint(&self) -> String {
        self.edge.as_ref().unwrap().0.endpoint.clone()
    }

    fn client(&self, key: &NodeKey) -> EdgeClient {
        EdgeClient::new(
            Connection::new(self.endpoint(), Duration::from_secs(20)),
            NodeKey::from_bytes(key.to_bytes()),
            pb_protocol::Audience {
                edge: self.edge_key.id(),
                community: CommunityId(COMMUNITY.into()),
            },
        )
    }

    /// Runs cycle `ctx`'s rounds for every member (fresh hiding keys)
    /// with `values`, and returns the members' clients, indexed like them.
    fn run_cycle(
        &mut self,
        op: &mut EdgeClient,
        roster: &pb_secagg::SignedRoster,
        ctx: &pb_model::CycleContext,
        values: &[Data],
    ) -> Vec<EdgeClient> {
        for m in &mut self.members {
            m.hiding = Some(common::hiding(COMMUNITY, m));
        }
        let mut clients: Vec<EdgeClient> =
            self.members.iter().map(|m| self.client(&m.key)).collect();
        let call = |cl: &mut EdgeClient, r: &Request| self.call(cl, r);
        common::all_rounds(
            &call,
            op,
            &mut clients,
            &self.members,
            roster,
            &self.operator,
            ctx,
            values,
        );
        clients
    }

    /// Member `i`'s bill of cycle 1, fetched over `client` and decrypted.
    fn bill(&self, client: &mut EdgeClient, i: usize) -> pb_model::Bill {
        let call = |cl: &mut EdgeClient, r: &Request| self.call(cl, r);
        let bill = common::bill(&call, client, 1);
        self.members[i]
            .hiding
            .as_ref()
            .unwrap()
            .decrypt(&bill)
            .unwrap()
    }

    fn try_call(&self, c: &mut EdgeClient, r: &Request) -> Result<Response, NetError> {
        self.rt.block_on(c.call(r)).map(|e| e.response)
    }

    fn call(&self, c: &mut EdgeClient, r: &Request) -> Response {
        self.try_call(c, r).unwrap()
    }

    /// Posts a signed member list with the operator's key.
    fn post(&self, signed: &pb_secagg::SignedRoster) -> Response {
        let call = |c: &mut EdgeClient, r: &Request| self.call(c, r);
        common::post_roster(&call, &mut self.client(&self.operator), signed)
    }

    /// `RotateKey` of member `i` to `new`, sent by `sender`.
    fn rotate(&self, sender: &NodeKey, i: usize, new: &NodeKey) -> Response {
        let m = &self.members[i];
        let proof = rotation_proof(new, &CommunityId(COMMUNITY.into()), &m.id, &sender.id());
        self.call(
            &mut self.client(sender),
            &Request::RotateKey {
                new_node: new.id(),
                proof,
            },
        )
    }

    /// Whether `key` is served: a fresh connection's `GetRoster` answers.
    fn served(&self, key: &NodeKey) -> bool {
        matches!(
            self.try_call(&mut self.client(key), &roster_request()),
            Ok(Response::Roster(_))
        )
    }
}

impl Drop for Community {
    fn drop(&mut self) {
        self.stop();
    }
}

fn roster_request() -> Request {
    Request::GetRoster {
        version: None,
        page: 0,
    }
}

fn refused(r: &Response, code: ErrorCode, words: &str) {
    match r {
        Response::Error { code: c, message } => {
            assert_eq!(*c, code, "{message}");
            assert!(message.contains(words), "{message:?} lacks {words:?}");
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// The handshake of a fresh connection with `key` is refused, naming the
/// rotation.
fn handshake_refused_naming_the_rotation(c: &Community, key: &NodeKey) {
    match c.try_call(&mut c.client(key), &roster_request()) {
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("handshake refused"), "{e}");
            assert!(e.contains("rotated its key to node"), "{e}");
        }
        Ok(r) => panic!("a retired key was served: {r:?}"),
    }
}

/// (a) The member rotates; its old key, on a session opened before the
/// rotation and on a new one, gets nothing (the attacker who stole the old
/// key after the rotation cannot use it, not even to rotate again); the
/// new key is served at once; the operator's next list names the new key
/// (a list or a cycle on the old key is refused, naming the rotation) and
/// the next cycle bills every member, the rotated one included, exactly.
#[test]
fn a_rotated_key_replaces_the_old_one_and_the_next_cycle_bills_with_it() {
    let mut c = Community::new();
    let old = NodeKey::from_bytes(c.members[0].key.to_bytes());
    let new = NodeKey::from_bytes([101; 32]);
    let mut old_session = c.client(&old);
    assert!(matches!(
        c.call(&mut old_session, &roster_request()),
        Response::Roster(_)
    ));

    assert_eq!(c.rotate(&old, 0, &new), Response::Ok);

    // The old key's open session: its envelopes are refused.
    refused(
        &c.call(&mut old_session, &roster_request()),
        ErrorCode::NotEnrolled,
        "rotated its key to node",
    );
    // A new session of the old key: refused at the handshake.
    handshake_refused_naming_the_rotation(&c, &old);
    // Whoever holds the old key now cannot rotate the member elsewhere.
    let thief = NodeKey::from_bytes([102; 32]);
    let proof = rotation_proof(
        &thief,
        &CommunityId(COMMUNITY.into()),
        &c.members[0].id,
        &old.id(),
    );
    let again = c.call(
        &mut old_session,
        &Request::RotateKey {
            new_node: thief.id(),
            proof,
        },
    );
    refused(&again, ErrorCode::NotEnrolled, "retired");
    assert!(!c.served(&thief));

    // The new key is served at once (the current list still names the
    // old key: the member is not revoked for that), and joins again with
    // the same household keys.
    assert!(c.served(&new));
    let join = Request::Join {
        member: c.members[0].id.clone(),
        przs: c.members[0].przs.public(),
        public_key: c.members[0].glwe.public_key(&mut deterministic(5)),
    };
    assert_eq!(c.call(&mut c.client(&new), &join), Response::Ok);
    match c.call(&mut c.client(&c.operator), &Request::GetMembers) {
        Response::Members(list) => {
            let k0 = list.members.iter().find(|e| e.member == c.members[0].id);
            assert_eq!(k0.map(|e| e.node), Some(new.id()));
        }
        other => panic!("{other:?}"),
    }

    // A cycle on list version 1 (the old key) is refused.
    refused(
        &c.call(&mut c.client(&c.operator), &Request::PutContext(context(1))),
        ErrorCode::Rejected,
        "rotated to node",
    );
    // A new list naming the old key is refused; one naming the new key
    // is taken.
    let all: Vec<&Member> = c.members.iter().collect();
    let stale = common::signed_roster(COMMUNITY, 2, &c.operator, &all);
    refused(&c.post(&stale), ErrorCode::Rejected, "rotated to node");
    c.members[0].key = NodeKey::from_bytes(new.to_bytes());
    let all: Vec<&Member> = c.members.iter().collect();
    let v2 = common::signed_roster(COMMUNITY, 2, &c.operator, &all);
    assert_eq!(c.post(&v2), Response::Ok);

    // The next cycle bills everyone exactly, k0 with its new key.
    let ctx = context(1);
    let mut op = c.client(&c.operator);
    assert_eq!(
        c.call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    let values: Vec<Data> = (0..4)
        .map(|i| data(&c.members[i].id, i as i64 + 3))
        .collect();
    let mut clients = c.run_cycle(&mut op, &v2, &ctx, &values);
    let want = reference::bills(&ctx, &values).unwrap();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(c.bill(client, i), want[i]);
    }
    // After the cycle the old key still gets nothing.
    refused(
        &c.call(&mut old_session, &Request::GetBill { cycle: CycleId(1) }),
        ErrorCode::NotEnrolled,
        "retired",
    );
    handshake_refused_naming_the_rotation(&c, &old);
}

/// (b) Rotations that must not happen are refused with the reason, and
/// change nothing: the old key still works and the would-be new key is
/// still not admitted. The attacker who holds only the new key (not the
/// enrolled one) cannot move a member onto it, nor can another member; a
/// revoked member cannot rotate; a member cannot rotate while a cycle it
/// is part of is in its rounds, and can once the cycle's rounds are over.
#[test]
fn refused_rotations_change_nothing() {
    let mut c = Community::new();
    let k0 = NodeKey::from_bytes(c.members[0].key.to_bytes());
    let new = NodeKey::from_bytes([111; 32]);
    let community = CommunityId(COMMUNITY.into());
    let unchanged = |c: &Community| {
        assert!(c.served(&c.members[0].key), "the old key must still work");
        assert!(!c.served(&new), "the new key must not be admitted");
    };
    let send = |c: &Community, sender: &NodeKey, new_node: &NodeKey, proof: Vec<u8>| {
        c.call(
            &mut c.client(sender),
            &Request::RotateKey {
                new_node: new_node.id(),
                proof,
            },
        )
    };

    // A proof signed by the old key, or by the new key over another
    // member, does not verify.
    let by_old = rotation_proof(&k0, &community, &c.members[0].id, &k0.id());
    refused(
        &send(&c, &k0, &new, by_old),
        ErrorCode::Rejected,
        "proof does not verify",
    );
    let for_k1 = rotation_proof(&new, &community, &c.members[1].id, &k0.id());
    refused(
        &send(&c, &k0, &new, for_k1),
        ErrorCode::Rejected,
        "proof does not verify",
    );
    unchanged(&c);

    // A key already enrolled (k1's), the key in use, an operator's key.
    refused(
        &c.rotate(&k0, 0, &c.members[1].key),
        ErrorCode::Rejected,
        "already admitted",
    );
    refused(&c.rotate(&k0, 0, &k0), ErrorCode::Rejected, "key in use");
    refused(
        &c.rotate(&k0, 0, &c.operator),
        ErrorCode::Rejected,
        "already admitted",
    );
    unchanged(&c);

    // Attacker with the new key only: its handshake is refused (it is not
    // enrolled), so it cannot even ask.
    let proof = rotation_proof(&new, &community, &c.members[0].id, &k0.id());
    match c.try_call(
        &mut c.client(&new),
        &Request::RotateKey {
            new_node: new.id(),
            proof: proof.clone(),
        },
    ) {
        Err(e) => assert!(e.to_string().contains("not enrolled"), "{e}"),
        Ok(r) => panic!("{r:?}"),
    }
    // Another member (k3, enrolled) sends the attacker's valid proof for
    // k0: the proof names k0 and k0's key, not k3's, so it fails.
    refused(
        &send(&c, &c.members[3].key, &new, proof),
        ErrorCode::Rejected,
        "proof does not verify",
    );
    unchanged(&c);
    assert!(c.served(&c.members[3].key));

    // A revoked member (k3, left off version 2) cannot rotate.
    let three: Vec<&Member> = c.members[..3].iter().collect();
    let v2 = common::signed_roster(COMMUNITY, 2, &c.operator, &three);
    assert_eq!(c.post(&v2), Response::Ok);
    let k3 = NodeKey::from_bytes(c.members[3].key.to_bytes());
    let new3 = NodeKey::from_bytes([113; 32]);
    refused(&c.rotate(&k3, 3, &new3), ErrorCode::NotEnrolled, "revoked");
    assert!(!c.served(&new3));

    // During cycle 1's rounds k0 cannot rotate.
    let ctx = context(1);
    let mut op = c.client(&c.operator);
    assert_eq!(
        c.call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    refused(
        &c.rotate(&k0, 0, &new),
        ErrorCode::NotReady,
        "part of cycle 1, whose rounds are still running",
    );
    unchanged(&c);

    // Once the cycle's rounds are over (bills delivered), it can.
    let values: Vec<Data> = (0..3)
        .map(|i| data(&c.members[i].id, i as i64 + 2))
        .collect();
    let mut clients = c.run_cycle(&mut op, &v2, &ctx, &values);
    let want = reference::bills(&ctx, &values).unwrap();
    assert_eq!(c.bill(&mut clients[0], 0), want[0]);
    assert_eq!(c.rotate(&k0, 0, &new), Response::Ok);
    assert!(c.served(&new));
    // The new key fetches the bill of the cycle billed before the
    // rotation.
    assert_eq!(c.bill(&mut c.client(&new), 0), want[0]);
    c.stop();
}

/// (c) A rotation survives an edge restart on the same store, although
/// edge.toml still names the first key: the new key is admitted and the
/// old one refused at the handshake, naming the rotation; a second
/// rotation chains onto the first, and a list naming the latest key is
/// taken after another restart.
#[test]
fn a_rotation_survives_an_edge_restart() {
    let mut c = Community::new();
    let first = NodeKey::from_bytes(c.members[2].key.to_bytes());
    let second = NodeKey::from_bytes([121; 32]);
    let third = NodeKey::from_bytes([122; 32]);
    assert_eq!(c.rotate(&first, 2, &second), Response::Ok);

    c.stop();
    c.start();
    handshake_refused_naming_the_rotation(&c, &first);
    assert!(c.served(&second));
    match c.call(&mut c.client(&c.operator), &Request::GetMembers) {
        Response::Members(list) => {
            let k2 = list.members.iter().find(|e| e.member == c.members[2].id);
            assert_eq!(k2.map(|e| e.node), Some(second.id()));
        }
        other => panic!("{other:?}"),
    }

    // A second rotation, then another restart: the chain holds.
    assert_eq!(c.rotate(&second, 2, &third), Response::Ok);
    c.stop();
    c.start();
    handshake_refused_naming_the_rotation(&c, &first);
    handshake_refused_naming_the_rotation(&c, &second);
    assert!(c.served(&third));
    // Rotating back to a retired key is refused.
    refused(
        &c.rotate(&third, 2, &first),
        ErrorCode::Rejected,
        "retired key",
    );
    c.members[2].key = NodeKey::from_bytes(third.to_bytes());
    let all: Vec<&Member> = c.members.iter().collect();
    let v2 = common::signed_roster(COMMUNITY, 2, &c.operator, &all);
    assert_eq!(c.post(&v2), Response::Ok);
    assert!(c.dir.path().join("data").exists());
}
