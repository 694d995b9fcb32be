//! The commented config file written on first start.
//!
//! It is valid as written (an empty configuration with every default explained), so a new user
//! can read what each key does and uncomment what they need.

/// The text of a fresh `clawline.json`.
pub const DEFAULT_CONFIG: &str = r#"// clawline configuration (JSON5: comments and trailing commas are fine).
// Check it with `clawline config validate`; change one key with `clawline config set <path> <value>`.
{
  gateway: {
    // port: 18789,
    // bind: "loopback",          // "loopback" (127.0.0.1) | "lan" (0.0.0.0) | "custom" + customBindHost
    auth: {
      // mode: "token",           // always on; "token" or "password"
      // The token is generated on first start and stored encrypted in the state directory;
      // `clawline token` prints it. To choose your own, reference it instead of writing it here:
      // token: "${CLAWLINE_GATEWAY_TOKEN}",
    },
    // http: { endpoints: { chatCompletions: { enabled: true } } },   // OpenAI-compatible /v1 API
  },

  models: {
    // A built-in provider's key in the environment (ANTHROPIC_API_KEY, OPENAI_API_KEY,
    // GEMINI_API_KEY, OPENROUTER_API_KEY, …) adds it automatically; `clawline models list --all`
    // lists them all, `clawline auth add|login <provider>` stores keys and sign-ins encrypted.
    // Any OpenAI-compatible server (llama.cpp, vLLM, LM Studio, Ollama's /v1) works too:
    // providers: {
    //   local: {
    //     baseUrl: "http://127.0.0.1:8080/v1",
    //     api: "openai-completions",  // or openai-responses, anthropic-messages, google-generative-ai, ollama, …
    //     apiKey: "${LOCAL_API_KEY}",  // optional for local servers
    //     models: [{ id: "my-model", contextWindow: 32768, maxTokens: 4096 }],
    //   },
    // },
  },

  agents: {
    defaults: {
      // model: "anthropic/claude-sonnet-4-5",   // "provider/model"
      // workspace: "~/.clawline/workspace",
      // maxTurns: 24,                           // model calls per turn before the run stops
      // timeoutSeconds: 600,
      // Per agent and UTC day, checked before every model call (0 = no limit):
      // budget: { dailyTokens: 5000000, dailyCostUsd: 25 },
    },
    // entries: { main: { name: "Main" } },
  },

  tools: {
    exec: {
      // security: "allowlist",   // "deny" | "allowlist" | "full"
      // safeBins: ["cat", "date", "echo", "grep", "head", "ls", "pwd", "sort", "tail", "uniq", "wc"],
      // timeoutSeconds: 30,
    },
    // A run stops when the same call repeats or calls keep failing:
    // loopDetection: { enabled: true, maxIdenticalCalls: 3, maxConsecutiveErrors: 8 },
  },

  // logging: { level: "info" },
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadContext, load};
    use std::path::Path;

    #[test]
    fn the_template_loads_with_no_warnings() {
        let env = |_: &str| None;
        let read = |_: &Path| Err("none".to_string());
        let ctx = LoadContext {
            file_label: "clawline.json",
            config_dir: Path::new("/s"),
            state_dir: Path::new("/s"),
            env: &env,
            read_file: &read,
            stored: None,
            presets: &[],
        };
        let loaded = load(DEFAULT_CONFIG, &ctx).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_eq!(loaded.config.gateway.port, 18789);
    }
}
