//! Secrets at rest: store and key files are private to their owner, and
//! the household's keys can be sealed under a passphrase. Each refusal
//! is clear and changes nothing.

use std::os::unix::fs::PermissionsExt;

use pb_core::sealed::Passphrase;
use pb_core::store::CoreStore;
use pb_protocol::NodeKey;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_and_key_files_are_created_private() {
    let d = tempfile::tempdir().unwrap();
    let core_dir = d.path().join("core");
    let store = CoreStore::open(&core_dir).unwrap();
    store.secrets().unwrap();
    drop(store);
    assert_eq!(mode(&core_dir.join("core.redb")), 0o600);
    assert_eq!(mode(&core_dir), 0o700);

    let edge_dir = d.path().join("edge");
    drop(pb_edge::EdgeStore::open(&edge_dir).unwrap());
    assert_eq!(mode(&edge_dir.join("edge.redb")), 0o600);
    assert_eq!(mode(&edge_dir), 0o700);

    let key = d.path().join("node.key");
    NodeKey::from_bytes([1; 32]).write_new(&key).unwrap();
    assert_eq!(mode(&key), 0o600);

    // A store file left readable by others (an older version, a copy) is
    // made private when opened.
    let lax = d.path().join("lax");
    std::fs::create_dir(&lax).unwrap();
    std::fs::write(lax.join("core.redb"), b"").unwrap();
    std::fs::set_permissions(
        lax.join("core.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    drop(CoreStore::open(&lax).unwrap());
    assert_eq!(mode(&lax.join("core.redb")), 0o600);
}

/// Attacker with a copy of the store file but not the passphrase: the
/// keys are not in it in clear, and it does not open without the right
/// passphrase.
#[test]
fn sealed_secrets_need_the_passphrase_and_refusals_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("core");
    let pass = Passphrase::new(b"a household passphrase").unwrap();
    let (przs, glwe) = {
        let store = CoreStore::open(&dir).unwrap();
        let s = store.secrets_with(Some(&pass)).unwrap();
        (s.przs.to_bytes(), s.glwe.to_bytes().to_vec())
    };
    let file = std::fs::read(dir.join("core.redb")).unwrap();
    assert!(!file.windows(32).any(|w| w == przs), "PRZS key in clear");
    assert!(
        !file.windows(64).any(|w| w == &glwe[..64]),
        "GLWE key in clear"
    );

    let store = CoreStore::open(&dir).unwrap();
    let err = store.secrets().err().unwrap().to_string();
    assert!(
        err.contains("encrypted: set secrets_passphrase_file"),
        "{err}"
    );
    let wrong = Passphrase::new(b"not the passphrase").unwrap();
    let err = store.secrets_with(Some(&wrong)).err().unwrap().to_string();
    assert!(err.contains("wrong passphrase"), "{err}");
    // Nothing changed: the right passphrase opens the same keys.
    let s = store.secrets_with(Some(&pass)).unwrap();
    assert_eq!(s.przs.to_bytes(), przs);
    assert_eq!(&s.glwe.to_bytes()[..], &glwe[..]);
    drop(store);

    // A store created without encryption is not silently switched.
    let clear_dir = d.path().join("clear");
    let store = CoreStore::open(&clear_dir).unwrap();
    let clear = store.secrets().unwrap().przs.to_bytes();
    let err = store.secrets_with(Some(&pass)).err().unwrap().to_string();
    assert!(err.contains("holds the household's keys in clear"), "{err}");
    assert_eq!(store.secrets().unwrap().przs.to_bytes(), clear);
}

#[test]
fn passphrase_files_are_read_bounded_and_checked() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("pass");
    std::fs::write(&p, "short\n").unwrap();
    assert!(Passphrase::read_file(&p).is_err());
    std::fs::write(&p, "long enough passphrase\n").unwrap();
    assert!(Passphrase::read_file(&p).is_ok());
    std::fs::write(&p, vec![b'x'; 4096]).unwrap();
    assert!(Passphrase::read_file(&p).is_err());
}

/// A cycle's SecAgg+ state (its per-cycle secrets) is sealed under the
/// passphrase like the household's keys: read without it, or with another,
/// it is refused and nothing changes; the stored bytes do not show the
/// state in clear.
#[test]
fn masking_state_is_sealed_with_the_passphrase() {
    use pb_units::{CycleId, MemberId};
    let d = tempfile::tempdir().unwrap();
    let keys: Vec<NodeKey> = (0..3u8).map(|i| NodeKey::from_bytes([i + 1; 32])).collect();
    let operator = NodeKey::from_bytes([9; 32]);
    let roster = pb_secagg::Roster::new(
        "c",
        1,
        keys.iter()
            .enumerate()
            .map(|(i, k)| pb_secagg::RosterEntry {
                member: MemberId::new(format!("m{i}")).unwrap(),
                identity: k.id().0,
            })
            .collect(),
    )
    .unwrap();
    let signed = pb_secagg::SignedRoster::sign(roster, operator.signing_key());
    let client = pb_secagg::Client::start(
        &signed,
        &operator.id().0,
        3,
        1,
        &MemberId::new("m0").unwrap(),
        keys[0].signing_key(),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let pass = Passphrase::new(b"a long enough passphrase").unwrap();
    let other = Passphrase::new(b"another long passphrase").unwrap();
    let store = CoreStore::open(d.path()).unwrap();
    store.put_client(CycleId(1), &client, Some(&pass)).unwrap();
    assert!(store.client(CycleId(1), None).is_err());
    assert!(store.client(CycleId(1), Some(&other)).is_err());
    let back = store.client(CycleId(1), Some(&pass)).unwrap().unwrap();
    assert_eq!(back.bundle(), client.bundle());
    drop(store);
    // The bundle's public keys are part of the clear state: they must not
    // appear in the file.
    let file = std::fs::read(d.path().join("core.redb")).unwrap();
    let pk = client.bundle().bundle.mask_pk;
    assert!(!file.windows(32).any(|w| w == pk));
}
