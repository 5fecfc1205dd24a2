//! A community of members and an honest edge, driven round by round, with
//! hooks for members that vanish.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use pb_secagg::client::MaskedInput;
use pb_secagg::server::Server;
use pb_secagg::{
    Client, Confirmation, Refusal, Reveal, Roster, RosterEntry, SignedRoster, SurvivorSet,
};
use pb_units::MemberId;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

pub const FIELDS: usize = 3;
pub const SLOTS: usize = 24;
pub const MIN: usize = 3;

pub struct Community {
    pub operator: SigningKey,
    pub ids: Vec<MemberId>,
    pub keys: Vec<SigningKey>,
    pub roster: SignedRoster,
    pub inputs: BTreeMap<MemberId, Vec<Vec<u64>>>,
    pub rng: ChaCha20Rng,
}

pub fn key(rng: &mut ChaCha20Rng) -> SigningKey {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    SigningKey::from_bytes(&b)
}

pub fn community(n: usize, seed: u64) -> Community {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let operator = key(&mut rng);
    let ids: Vec<MemberId> = (0..n)
        .map(|i| MemberId::new(format!("h{i:04}")).unwrap())
        .collect();
    let keys: Vec<SigningKey> = ids.iter().map(|_| key(&mut rng)).collect();
    let roster = Roster::new(
        "test-community",
        1,
        ids.iter()
            .zip(&keys)
            .map(|(m, k)| RosterEntry {
                member: m.clone(),
                identity: k.verifying_key().to_bytes(),
            })
            .collect(),
    )
    .unwrap();
    let roster = SignedRoster::sign(roster, &operator);
    let inputs = ids
        .iter()
        .map(|m| {
            let v = (0..FIELDS)
                .map(|_| (0..SLOTS).map(|_| rng.next_u64() % 200_000).collect())
                .collect();
            (m.clone(), v)
        })
        .collect();
    Community {
        operator,
        ids,
        keys,
        roster,
        inputs,
        rng,
    }
}

impl Community {
    pub fn pinned(&self) -> [u8; 32] {
        self.operator.verifying_key().to_bytes()
    }

    pub fn key_of(&self, m: &MemberId) -> &SigningKey {
        &self.keys[self.ids.iter().position(|x| x == m).unwrap()]
    }

    pub fn client(&mut self, m: &MemberId, cycle: u64) -> Client {
        let key = self.key_of(m).clone();
        let pinned = self.pinned();
        Client::start(&self.roster, &pinned, MIN, cycle, m, &key, &mut self.rng).unwrap()
    }

    pub fn server(&self, cycle: u64) -> Server {
        Server::new(&self.roster, &self.pinned(), cycle, MIN, FIELDS, SLOTS).unwrap()
    }

    /// The plain sum of `members`' inputs.
    pub fn sum(&self, members: &[MemberId]) -> Vec<Vec<u64>> {
        let mut s = vec![vec![0u64; SLOTS]; FIELDS];
        for m in members {
            for (acc, v) in s.iter_mut().zip(&self.inputs[m]) {
                for (a, x) in acc.iter_mut().zip(v) {
                    *a = a.wrapping_add(*x);
                }
            }
        }
        s
    }
}

/// Who vanishes before which round.
#[derive(Default, Clone)]
pub struct Dropouts {
    pub before_advertise: Vec<usize>,
    pub before_share: Vec<usize>,
    pub before_mask: Vec<usize>,
    pub before_confirm: Vec<usize>,
    pub before_reveal: Vec<usize>,
}

/// A whole honest cycle; returns the unmasked sum, the survivor set, and
/// the clients (for further checks).
pub struct Run {
    pub server: Server,
    pub clients: BTreeMap<MemberId, Client>,
    pub set: Option<SurvivorSet>,
    pub masked: BTreeMap<MemberId, MaskedInput>,
    pub reveals: Vec<Reveal>,
    pub result: Result<Vec<Vec<u64>>, Refusal>,
}

pub fn run(c: &mut Community, cycle: u64, drops: &Dropouts) -> Run {
    let mut server = c.server(cycle);
    let gone =
        |stage: &[usize], m: &MemberId, ids: &[MemberId]| stage.iter().any(|&i| &ids[i] == m);
    let ids = c.ids.clone();
    let mut clients: BTreeMap<MemberId, Client> = BTreeMap::new();
    for m in &ids {
        if gone(&drops.before_advertise, m, &ids) {
            continue;
        }
        let client = c.client(m, cycle);
        server.advertise(client.bundle().clone()).unwrap();
        clients.insert(m.clone(), client);
    }
    let mut out = Run {
        server,
        clients: BTreeMap::new(),
        set: None,
        masked: BTreeMap::new(),
        reveals: Vec::new(),
        result: Err(Refusal::NoEntropy),
    };
    if let Err(e) = out.server.close_advertise() {
        out.result = Err(e);
        out.clients = clients;
        return out;
    }
    clients.retain(|m, _| !gone(&drops.before_share, m, &ids));
    for (m, client) in clients.iter_mut() {
        let bundles = out.server.bundles_for(m).unwrap();
        let shares = client.share(&bundles, &mut c.rng).unwrap();
        out.server.share(m, shares).unwrap();
    }
    if let Err(e) = out.server.close_share() {
        out.result = Err(e);
        out.clients = clients;
        return out;
    }
    clients.retain(|m, _| !gone(&drops.before_mask, m, &ids));
    for (m, client) in clients.iter_mut() {
        let incoming = out.server.shares_for(m).unwrap();
        let masked = client.mask(&incoming, &c.inputs[m]).unwrap();
        out.masked.insert(m.clone(), masked.clone());
        out.server.submit(masked).unwrap();
    }
    let set = match out.server.close_mask() {
        Ok(s) => s,
        Err(e) => {
            out.result = Err(e);
            out.clients = clients;
            return out;
        }
    };
    out.set = Some(set.clone());
    let roster = c.roster.roster.clone();
    let mut confirmed: BTreeMap<MemberId, Confirmation> = BTreeMap::new();
    for (m, client) in clients.iter_mut() {
        if gone(&drops.before_confirm, m, &ids) {
            continue;
        }
        let conf = client.confirm(&set, &roster, c.key_of(m)).unwrap();
        out.server.confirm(conf.clone()).unwrap();
        confirmed.insert(m.clone(), conf);
    }
    for (m, client) in clients.iter_mut() {
        if gone(&drops.before_confirm, m, &ids) || gone(&drops.before_reveal, m, &ids) {
            continue;
        }
        match client.reveal(&set.hash(), &out.server.confirmations_for(m)) {
            Ok(r) => {
                out.server.reveal(r.clone()).unwrap();
                out.reveals.push(r);
            }
            Err(Refusal::TooFewConfirmations { .. }) => {}
            Err(e) => panic!("{m}: {e}"),
        }
    }
    out.result = out.server.unmask();
    out.clients = clients;
    out
}

/// An honest cycle up to the masked inputs (everyone present).
pub fn through_mask(
    c: &mut Community,
    cycle: u64,
) -> (
    Server,
    BTreeMap<MemberId, Client>,
    BTreeMap<MemberId, MaskedInput>,
) {
    let mut server = c.server(cycle);
    let ids = c.ids.clone();
    let mut clients = BTreeMap::new();
    for m in &ids {
        let client = c.client(m, cycle);
        server.advertise(client.bundle().clone()).unwrap();
        clients.insert(m.clone(), client);
    }
    server.close_advertise().unwrap();
    for (m, client) in clients.iter_mut() {
        let shares = client
            .share(&server.bundles_for(m).unwrap(), &mut c.rng)
            .unwrap();
        server.share(m, shares).unwrap();
    }
    server.close_share().unwrap();
    let mut masked = BTreeMap::new();
    for (m, client) in clients.iter_mut() {
        let input = client
            .mask(&server.shares_for(m).unwrap(), &c.inputs[m])
            .unwrap();
        server.submit(input.clone()).unwrap();
        masked.insert(m.clone(), input);
    }
    (server, clients, masked)
}
