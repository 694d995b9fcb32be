//! The built-in catalog as the config loader uses it: providers switched on by their
//! environment variables, presets merged with the file, URL templates, rotation keys, and
//! Copilot's editor sign-in.

use std::collections::HashMap;
use std::path::Path;

use clawline_core::config::{ApiKind, ConfigError, ConfigErrors, LoadContext, Loaded, load};
use clawline_providers::catalog::PRESETS;

fn load_with(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let env_fn = move |k: &str| env.get(k).cloned();
    let read = |p: &Path| {
        if p == Path::new("/home/u/.config/github-copilot/apps.json") {
            Ok(r#"{"github.com:Iv1.b507a08c87ecfe98":{"user":"u","oauth_token":"gho_from_the_editor"}}"#.to_string())
        } else {
            Err("no such file".to_string())
        }
    };
    let ctx = LoadContext {
        file_label: "/cfg/clawline.json",
        config_dir: Path::new("/cfg"),
        state_dir: Path::new("/state"),
        env: &env_fn,
        read_file: &read,
        stored: None,
        presets: PRESETS,
    };
    load(text, &ctx)
}

fn first_error(text: &str, env: &[(&str, &str)]) -> ConfigError {
    load_with(text, env).expect_err("should fail").0.remove(0)
}

#[test]
fn copilot_finds_the_editors_sign_in_and_exchanges_it() {
    let c = load_with("{}", &[("HOME", "/home/u")]).unwrap().config;
    let p = &c.providers["github-copilot"];
    assert_eq!(p.api_key.as_ref().unwrap().expose(), "gho_from_the_editor");
    assert!(p.api_key_source.as_deref().unwrap().contains("apps.json"));
    assert_eq!(p.token_exchange.as_deref(), Some("https://api.github.com/copilot_internal/v2/token"));
    assert!(c.default_agent().model.is_none(), "Copilot is never picked without being asked for");
    let c = load_with("{}", &[("HOME", "/home/u"), ("COPILOT_GITHUB_TOKEN", "gho_env")]).unwrap().config;
    assert_eq!(c.providers["github-copilot"].api_key_source.as_deref(), Some("env COPILOT_GITHUB_TOKEN"));
}

#[test]
fn built_in_providers_from_env_and_config() {
    let env = [
        ("GEMINI_API_KEY", "g-1"),
        ("OPENROUTER_API_KEYS", "or-1, or-2;or-3"),
        ("OPENROUTER_API_KEY_5", "or-5"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
        ("AWS_REGION", "eu-west-1"),
    ];
    let c = load_with("{}", &env).unwrap().config;
    assert_eq!(c.providers["google"].api, ApiKind::GoogleGenerativeAi);
    assert_eq!(c.providers["google"].api_key_source.as_deref(), Some("env GEMINI_API_KEY"));
    // OpenRouter: no single key, so the rotation list's first key leads; no repeats.
    let or = &c.providers["openrouter"];
    assert_eq!(or.api_key.as_ref().unwrap().expose(), "or-1");
    assert_eq!(or.api_key_source.as_deref(), Some("env OPENROUTER_API_KEYS[1]"));
    let extra: Vec<&str> = or.extra_keys.iter().map(|(_, k)| k.expose()).collect();
    assert_eq!(extra, ["or-2", "or-3", "or-5"]);
    assert_eq!(or.extra_keys[0].0, "env OPENROUTER_API_KEYS[2]");
    let bedrock = &c.providers["amazon-bedrock"];
    assert_eq!(bedrock.base_url, "https://bedrock-runtime.eu-west-1.amazonaws.com");
    assert_eq!(bedrock.aws.as_ref().unwrap().access_key_id, "AKID");
    // Gemini comes before OpenRouter and Bedrock in the catalog.
    assert_eq!(c.default_agent().model.as_ref().unwrap().to_string(), "google/gemini-2.5-flash");

    let text = r#"{
      models: { providers: {
        "cloudflare-ai-gateway": { accountId: "acc", gatewayId: "gw", apiKey: "k",
                                   models: [{ id: "claude-sonnet-4-5", cost: { input: 9 } }] },
        moonshot: { baseUrl: "https://api.moonshot.cn/v1/" },
      } },
      agents: { defaults: { model: { primary: "moonshot/kimi-k2.5", fallbacks: ["anthropic/claude-haiku-4-5"] } } },
    }"#;
    let c = load_with(text, &[("MOONSHOT_API_KEY", "m-1")]).unwrap().config;
    let cf = &c.providers["cloudflare-ai-gateway"];
    assert_eq!(cf.api, ApiKind::AnthropicMessages);
    assert_eq!(cf.base_url, "https://gateway.ai.cloudflare.com/v1/acc/gw/anthropic");
    assert_eq!(cf.model("claude-sonnet-4-5").unwrap().cost.input, 9.0, "the file's entry wins");
    assert_eq!(c.providers["moonshot"].base_url, "https://api.moonshot.cn/v1");
    assert_eq!(c.providers["moonshot"].api_key_source.as_deref(), Some("env MOONSHOT_API_KEY"));
    // Named as a fallback with no key anywhere: known (a stored profile may supply one).
    assert!(c.providers["anthropic"].implicit && c.providers["anthropic"].api_key.is_none());

    let e = first_error("{ models: { providers: { 'cloudflare-ai-gateway': { apiKey: 'k' } } } }", &[]);
    assert_eq!(e.path, "models.providers.cloudflare-ai-gateway.accountId");
    assert!(e.message.contains("needs `accountId`"), "{e}");
}
