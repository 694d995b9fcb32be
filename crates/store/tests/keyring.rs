//! The master key in a real OS keyring: GNOME Keyring on a private session bus (testkit's
//! `KeyringSession`). A new state directory's key goes to the keyring and leaves only a marker;
//! the next start reads the same key back; a keyring that lost the item, or cannot be reached,
//! is an error that says so and never a silent new key.
//!
//! Without `dbus-daemon`, `gnome-keyring` and `secret-tool` installed the tests say so and pass,
//! unless `CLAWLINE_REQUIRE_KEYRING=1` (which `scripts/test` sets once it has installed them).

use clawline_store::keyring::SecretService;
use clawline_store::{KeySource, KeyringChoice, StatePaths, keyring_marker, resolve_master_key};
use clawline_testkit::keyring_session::KeyringSession;

fn session() -> Option<KeyringSession> {
    match KeyringSession::start() {
        Ok(s) => Some(s),
        Err(why) if std::env::var("CLAWLINE_REQUIRE_KEYRING").as_deref() != Ok("1") => {
            eprintln!("skipping the keyring test: {why}");
            None
        }
        Err(why) => panic!("the keyring lane is required here: {why}"),
    }
}

fn service(s: &KeyringSession) -> SecretService {
    SecretService::with_program(s.secret_tool(), s.env())
}

#[test]
fn a_new_key_lives_in_the_keyring_and_comes_back() {
    let Some(session) = session() else { return };
    let keyring = service(&session);
    let dir = tempfile::tempdir().unwrap();
    let paths = StatePaths::new(dir.path());

    let (key, source) = resolve_master_key(&paths, None, KeyringChoice::Auto, Some(&keyring)).unwrap();
    assert_eq!(source, KeySource::Keyring { created: true });
    assert!(!paths.master_key().exists(), "no key file beside the keyring");
    let marker = std::fs::read_to_string(keyring_marker(&paths)).unwrap();
    assert!(marker.contains("\"application\": \"clawline\""), "{marker}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keyring_marker(&paths)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
    // What is in the keyring is the key, and the marker holds none of it.
    let state = std::fs::canonicalize(dir.path()).unwrap().display().to_string();
    let (found, hex) =
        session.run_secret_tool(&["lookup", "application", "clawline", "purpose", "master-key", "state", &state]);
    assert!(found && hex.trim().len() == 64, "the keyring holds a 64-hex key");
    assert!(!marker.contains(hex.trim()));

    // The next start reads the same key: something sealed with it opens.
    let sealed = {
        let store = clawline_store::Store::open(&paths.database()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            store.put_secret("probe", &clawline_core::secret::SecretString::new("s3cret"), &key).await.unwrap();
        });
        store
    };
    let (again, source) = resolve_master_key(&paths, None, KeyringChoice::Auto, Some(&keyring)).unwrap();
    assert_eq!(source, KeySource::Keyring { created: false });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opened = rt.block_on(sealed.get_secret("probe", &again)).unwrap().unwrap();
    assert_eq!(opened.expose(), "s3cret");

    // Off, or no keyring in this session: a precise error, and still no new key.
    let e = resolve_master_key(&paths, None, KeyringChoice::Off, Some(&keyring)).unwrap_err();
    assert!(e.to_string().contains("CLAWLINE_KEYRING=off"), "{e}");
    let e = resolve_master_key(&paths, None, KeyringChoice::Auto, None).unwrap_err();
    assert!(e.to_string().contains("no Secret Service is reachable"), "{e}");

    // The item removed from the keyring: said plainly.
    let (cleared, _) =
        session.run_secret_tool(&["clear", "application", "clawline", "purpose", "master-key", "state", &state]);
    assert!(cleared);
    let e = resolve_master_key(&paths, None, KeyringChoice::Auto, Some(&keyring)).unwrap_err();
    assert!(e.to_string().contains("no longer has it"), "{e}");
    assert!(!paths.master_key().exists());
}

#[test]
fn an_existing_key_file_is_kept_and_required_means_required() {
    let Some(session) = session() else { return };
    let keyring = service(&session);
    let dir = tempfile::tempdir().unwrap();
    let paths = StatePaths::new(dir.path());
    let (_, source) = resolve_master_key(&paths, None, KeyringChoice::Off, Some(&keyring)).unwrap();
    assert!(matches!(source, KeySource::File { created: true, .. }));
    let (_, source) = resolve_master_key(&paths, None, KeyringChoice::Auto, Some(&keyring)).unwrap();
    assert!(matches!(source, KeySource::File { created: false, .. }), "a key file in use is never moved");
    assert!(!keyring_marker(&paths).exists());

    let other = tempfile::tempdir().unwrap();
    let paths = StatePaths::new(other.path());
    let (_, source) = resolve_master_key(&paths, None, KeyringChoice::Required, Some(&keyring)).unwrap();
    assert_eq!(source, KeySource::Keyring { created: true });
    // A broken keyring program under `on` is an error; under `auto` the key file takes over.
    let broken = SecretService::with_program("/nonexistent/secret-tool", vec![]);
    let third = tempfile::tempdir().unwrap();
    let e =
        resolve_master_key(&StatePaths::new(third.path()), None, KeyringChoice::Required, Some(&broken)).unwrap_err();
    assert!(e.to_string().contains("did not start"), "{e}");
    let (_, source) =
        resolve_master_key(&StatePaths::new(third.path()), None, KeyringChoice::Auto, Some(&broken)).unwrap();
    assert!(matches!(source, KeySource::File { created: true, .. }));
}
