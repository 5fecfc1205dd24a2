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
        max_members: pb_edge::config::DEFAULT_MAX_MEMBERS,
        retention: Default::default(),
        min_members: 3,
        dropout_deadline_secs,
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
