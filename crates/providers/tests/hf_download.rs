//! Downloading a model from the Hugging Face Hub twin: the three files land in place, the large
//! one through a redirect to another host (with its hash checked, and without the token), a
//! complete folder is not downloaded again, and every refusal or damaged download is an error
//! that leaves no file behind that could be taken for a model.

use clawline_core::config::memory::HfModel;
use clawline_core::secret::SecretString;
use clawline_providers::hf_download::{HfError, MODEL_FILES, download_model, is_complete};
use clawline_testkit::hf_server::HfServer;

const REPO: &str = "sentence-transformers/tiny-test";

fn weights() -> Vec<u8> {
    (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect()
}

async fn hub() -> HfServer {
    let hub = HfServer::start().await;
    hub.add(REPO, "main", "config.json", br#"{"hidden_size": 8}"#.to_vec(), false);
    hub.add(REPO, "main", "tokenizer.json", br#"{"model": {}}"#.to_vec(), false);
    hub.add(REPO, "main", "model.safetensors", weights(), true);
    hub
}

fn model(hub: &HfServer, token: Option<&str>) -> HfModel {
    HfModel {
        repo: REPO.into(),
        revision: "main".into(),
        endpoint: hub.endpoint(),
        token: token.map(SecretString::new),
    }
}

fn quiet() -> impl Fn(clawline_providers::hf_download::DownloadProgress) + Sync {
    |_| {}
}

#[tokio::test]
async fn downloads_once_following_the_redirect_without_the_token() {
    let hub = hub().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("models/hf/x/main");
    let seen = std::sync::Mutex::new(Vec::new());
    download_model(&model(&hub, Some("hf_secret_token")), &target, &|p| seen.lock().unwrap().push(p)).await.unwrap();
    assert!(is_complete(&target));
    assert_eq!(std::fs::read(target.join("model.safetensors")).unwrap(), weights());
    assert!(!target.join("model.safetensors.part").exists());
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.file.as_str(), last.total), ("model.safetensors", Some(weights().len() as u64)));

    let requests = hub.requests();
    let to_hub: Vec<_> = requests.iter().filter(|r| r.path.contains("/resolve/")).collect();
    assert_eq!(to_hub.len(), 3, "{requests:?}");
    assert!(to_hub.iter().all(|r| r.authorization.as_deref() == Some("Bearer hf_secret_token")));
    let cdn = requests.iter().find(|r| r.path.starts_with("/lfs/")).expect("the redirect was followed");
    assert!(cdn.host.starts_with("localhost:"), "{cdn:?}");
    assert_eq!(cdn.authorization, None, "the token stays with the hub");

    // Complete: nothing is fetched again.
    download_model(&model(&hub, None), &target, &quiet()).await.unwrap();
    assert_eq!(hub.requests().len(), requests.len());
}

#[tokio::test]
async fn a_damaged_or_short_download_is_refused_and_retried_later() {
    let hub = hub().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m");
    hub.corrupt(true);
    let err = download_model(&model(&hub, None), &target, &quiet()).await.unwrap_err();
    assert!(matches!(&err, HfError::Corrupt { file, .. } if file == "model.safetensors"), "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(!is_complete(&target) && !target.join("model.safetensors").exists());
    assert!(!target.join("model.safetensors.part").exists(), "no partial file is left");

    hub.corrupt(false);
    hub.cut_short(true);
    let err = download_model(&model(&hub, None), &target, &quiet()).await.unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");

    // Once the hub serves it whole, only the missing file is fetched.
    hub.cut_short(false);
    let before = hub.requests().len();
    download_model(&model(&hub, None), &target, &quiet()).await.unwrap();
    assert!(is_complete(&target));
    let fetched: Vec<_> = hub.requests()[before..].iter().map(|r| r.path.clone()).collect();
    assert_eq!(fetched.len(), 2, "the weights and their redirect only: {fetched:?}");
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let hub = hub().await;
    let dir = tempfile::tempdir().unwrap();
    let msg = |e: HfError| e.to_string();

    let mut m = model(&hub, None);
    m.repo = "nobody/missing".into();
    let e = msg(download_model(&m, &dir.path().join("a"), &quiet()).await.unwrap_err());
    assert!(e.contains("not found") && e.contains("HF_TOKEN"), "{e}");

    let mut m = model(&hub, None);
    m.revision = "v9".into();
    let e = msg(download_model(&m, &dir.path().join("b"), &quiet()).await.unwrap_err());
    assert!(e.contains("no revision `v9`"), "{e}");

    hub.add("acme/no-weights", "main", "config.json", b"{}".to_vec(), false);
    let mut m = model(&hub, None);
    m.repo = "acme/no-weights".into();
    let e = msg(download_model(&m, &dir.path().join("c"), &quiet()).await.unwrap_err());
    assert!(e.contains("has no tokenizer.json") && e.contains("safetensors"), "{e}");

    hub.gate(REPO, "hf_right");
    let e = msg(download_model(&model(&hub, None), &dir.path().join("d"), &quiet()).await.unwrap_err());
    assert!(e.contains("gated") && e.contains("HF_TOKEN"), "{e}");
    let e = msg(download_model(&model(&hub, Some("hf_wrong")), &dir.path().join("d"), &quiet()).await.unwrap_err());
    assert!(e.contains("gated"), "{e}");
    assert!(!e.contains("hf_wrong"), "the token is never in a message");
    download_model(&model(&hub, Some("hf_right")), &dir.path().join("d"), &quiet()).await.unwrap();
    assert!(MODEL_FILES.iter().all(|f| dir.path().join("d").join(f).is_file()));
}
