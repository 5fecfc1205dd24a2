//! What the edge's socket tests share: a small community's cycle, data
//! and members.

#![allow(dead_code)]

use std::path::Path;

use pb_edge::{EdgeConfig, Enrollment};
use pb_glwe::SecretKey;
use pb_hiding::HidingContext;
use pb_model::{BillingModel, CycleContext, Data};
use pb_protocol::{ErrorCode, NodeKey, Response};
use pb_przs::IdentityKey;
use pb_units::{CycleId, MemberId, PriceUnits, Wh};

pub const SLOTS: usize = 8;

pub struct Member {
    pub key: NodeKey,
    pub hiding: Option<HidingContext>,
    pub przs: IdentityKey,
    pub glwe: std::sync::Arc<SecretKey>,
    pub id: MemberId,
}

pub fn context(cycle: u64) -> CycleContext {
    CycleContext::new(
        CycleId(cycle),
        BillingModel::Ucs,
        (0..SLOTS)
            .map(|t| PriceUnits(200_000 + 1000 * t as i64))
            .collect(),
        vec![PriceUnits(300_000); SLOTS],
        vec![PriceUnits(50_000); SLOTS],
    )
    .unwrap()
}

pub fn data(m: &MemberId, i: i64) -> Data {
    Data::new(
        m.clone(),
        CycleId(1),
        (0..SLOTS as i64).map(|t| Wh(500 * i - 300 * t)).collect(),
        (0..SLOTS as i64)
            .map(|t| Wh(450 * i - 280 * t + 17 * i * t))
            .collect(),
    )
    .unwrap()
}

pub fn error_code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// An edge on a loopback port with `members` enrolled and `operator`
/// allowed to post contexts; the edge's key is `dir/edge.key`.
pub fn edge_config(
    dir: &Path,
    community: &str,
    operator: &NodeKey,
    members: &[Member],
    dropout_deadline_secs: u64,
) -> EdgeConfig {
    EdgeConfig {
        community: community.into(),
        listen: "tcp://127.0.0.1:0".into(),
        data_dir: dir.join("data"),
        key_file: dir.join("edge.key"),
        limits: Default::default(),
        metrics: None,
        max_members: pb_edge::config::DEFAULT_MAX_MEMBERS,
        retention: Default::default(),
        store_cache_mib: pb_edge::config::DEFAULT_STORE_CACHE_MIB,
        min_members: 3,
        dropout_deadline_secs,
        round_secs: dropout_deadline_secs,
        operators: vec![operator.id().to_hex()],
        members: members
            .iter()
            .map(|m| Enrollment {
                member: m.id.to_string(),
                node: m.key.id().to_hex(),
            })
            .collect(),
    }
}

/// One request to the edge (the test's runtime and client).
pub type Call<'a> = &'a dyn Fn(&mut pb_net::EdgeClient, &pb_protocol::Request) -> Response;

/// A member's hiding context for SecAgg+.
pub fn hiding(community: &str, m: &Member) -> HidingContext {
    HidingContext::for_secagg(
        &pb_units::CommunityId(community.into()),
        &m.id,
        m.glwe.clone(),
    )
}

/// The member list of `members`, signed by `operator`.
pub fn signed_roster(
    community: &str,
    version: u64,
    operator: &NodeKey,
    members: &[&Member],
) -> pb_secagg::SignedRoster {
    let roster = pb_secagg::Roster::new(
        community,
        version,
        members
            .iter()
            .map(|m| pb_secagg::RosterEntry {
                member: m.id.clone(),
                identity: m.key.id().0,
            })
            .collect(),
    )
    .unwrap();
    pb_secagg::SignedRoster::sign(roster, operator.signing_key())
}

/// Posts a signed member list; the answer to its last page.
pub fn post_roster(
    call: Call<'_>,
    op: &mut pb_net::EdgeClient,
    signed: &pb_secagg::SignedRoster,
) -> Response {
    let mut last = Response::Ok;
    for page in pb_protocol::RosterPage::split(signed) {
        last = call(op, &pb_protocol::Request::PutRoster(page));
    }
    last
}

/// A member's SecAgg+ state for `cycle`.
pub fn start(
    signed: &pb_secagg::SignedRoster,
    operator: &NodeKey,
    m: &Member,
    cycle: u64,
) -> pb_secagg::Client {
    pb_secagg::Client::start(
        signed,
        &operator.id().0,
        3,
        cycle,
        &m.id,
        m.key.signing_key(),
        &mut rand_core::OsRng,
    )
    .unwrap()
}

/// Advertise round.
pub fn advertise(
    call: Call<'_>,
    c: &mut pb_net::EdgeClient,
    client: &pb_secagg::Client,
    cycle: u64,
) -> Response {
    call(
        c,
        &pb_protocol::Request::Advertise {
            cycle: CycleId(cycle),
            bundle: client.bundle().clone(),
        },
    )
}

/// Share round: fetches the neighbours' bundles, sends the shares.
pub fn share(
    call: Call<'_>,
    c: &mut pb_net::EdgeClient,
    client: &mut pb_secagg::Client,
    cycle: u64,
) -> Response {
    let Response::Bundles(b) = call(
        c,
        &pb_protocol::Request::GetBundles {
            cycle: CycleId(cycle),
        },
    ) else {
        panic!("no bundles");
    };
    let shares = client.share(&b, &mut rand_core::OsRng).unwrap();
    call(
        c,
        &pb_protocol::Request::Share {
            cycle: CycleId(cycle),
            shares,
        },
    )
}

/// Mask round: fetches the shares and returns the masked submission.
pub fn masked(
    call: Call<'_>,
    c: &mut pb_net::EdgeClient,
    client: &mut pb_secagg::Client,
    mut hidden: pb_hiding::HiddenData,
    cycle: u64,
) -> pb_protocol::Request {
    let Response::Shares(s) = call(
        c,
        &pb_protocol::Request::GetShares {
            cycle: CycleId(cycle),
        },
    ) else {
        panic!("no shares");
    };
    let m = client.mask(&s, &hidden.masked).unwrap();
    hidden.masked = m.vectors.clone();
    pb_protocol::Request::Submit {
        data: hidden,
        partners: m.partners.clone(),
    }
}

/// Confirm round.
pub fn confirm(
    call: Call<'_>,
    c: &mut pb_net::EdgeClient,
    client: &mut pb_secagg::Client,
    signed: &pb_secagg::SignedRoster,
    key: &NodeKey,
    cycle: u64,
) -> Response {
    let Response::Survivors(set) = call(
        c,
        &pb_protocol::Request::GetSurvivors {
            cycle: CycleId(cycle),
        },
    ) else {
        panic!("no survivor set");
    };
    let set = set.expand(&signed.roster).unwrap();
    let confirmation = client
        .confirm(&set, &signed.roster, key.signing_key())
        .unwrap();
    call(
        c,
        &pb_protocol::Request::Confirm {
            cycle: CycleId(cycle),
            confirmation,
        },
    )
}

/// Reveal round.
pub fn reveal(
    call: Call<'_>,
    c: &mut pb_net::EdgeClient,
    client: &mut pb_secagg::Client,
    cycle: u64,
) -> Response {
    let Response::Confirmations(cs) = call(
        c,
        &pb_protocol::Request::GetConfirmations {
            cycle: CycleId(cycle),
        },
    ) else {
        panic!("no confirmations");
    };
    let set = client.confirmed().unwrap().set;
    let reveal = client.reveal(&set, &cs).unwrap();
    call(
        c,
        &pb_protocol::Request::Reveal {
            cycle: CycleId(cycle),
            reveal,
        },
    )
}

/// Waits until the cycle reaches `round`.
pub fn wait_round(call: Call<'_>, c: &mut pb_net::EdgeClient, cycle: u64, round: pb_secagg::Round) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Response::Cycle {
            round: r, billed, ..
        } = call(
            c,
            &pb_protocol::Request::GetCycle {
                cycle: CycleId(cycle),
            },
        ) {
            if r >= round || billed {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "round {round:?} not reached"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Polls `GetBill` until the bill is there (billing runs between
/// requests, a moment after the aggregate is unmasked).
pub fn bill(call: Call<'_>, c: &mut pb_net::EdgeClient, cycle: u64) -> pb_hiding::HiddenBill {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match call(
            c,
            &pb_protocol::Request::GetBill {
                cycle: CycleId(cycle),
            },
        ) {
            Response::Bill(b) => return b,
            Response::Pending { .. } => {}
            other => panic!("{other:?}"),
        }
        assert!(std::time::Instant::now() < until, "no bill in time");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Every member of `members` (each with its client, at the same index)
/// through every round of cycle 1, hiding `values[i]` under `ctx`, each
/// round awaited through the operator's client `op`: what an honest
/// community does when nobody drops out.
#[allow(clippy::too_many_arguments)]
pub fn all_rounds(
    call: Call<'_>,
    op: &mut pb_net::EdgeClient,
    clients: &mut [pb_net::EdgeClient],
    members: &[Member],
    roster: &pb_secagg::SignedRoster,
    operator: &NodeKey,
    ctx: &CycleContext,
    values: &[Data],
) {
    use pb_secagg::Round;
    let n = values.len();
    let mut secagg: Vec<pb_secagg::Client> = members[..n]
        .iter()
        .map(|m| start(roster, operator, m, 1))
        .collect();
    for i in 0..n {
        assert_eq!(
            advertise(call, &mut clients[i], &secagg[i], 1),
            Response::Ok
        );
    }
    wait_round(call, op, 1, Round::Share);
    for i in 0..n {
        assert_eq!(
            share(call, &mut clients[i], &mut secagg[i], 1),
            Response::Ok
        );
    }
    wait_round(call, op, 1, Round::Mask);
    for i in 0..n {
        let hiding = members[i].hiding.as_ref().expect("hiding context");
        let h = hiding
            .hide(
                &values[i],
                ctx,
                &mut pb_glwe::seeding::deterministic(400 + i as u128),
            )
            .unwrap();
        let r = masked(call, &mut clients[i], &mut secagg[i], h, 1);
        assert_eq!(call(&mut clients[i], &r), Response::Ok);
    }
    wait_round(call, op, 1, Round::Confirm);
    for i in 0..n {
        let key = &members[i].key;
        assert_eq!(
            confirm(call, &mut clients[i], &mut secagg[i], roster, key, 1),
            Response::Ok
        );
    }
    for i in 0..n {
        // Answers after the aggregate was unmasked are not needed.
        let r = reveal(call, &mut clients[i], &mut secagg[i], 1);
        assert!(
            r == Response::Ok || error_code(&r) == Some(ErrorCode::AlreadyDone),
            "{r:?}"
        );
    }
}
