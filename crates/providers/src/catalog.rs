//! The built-in provider catalog: every model provider clawline knows by name, with the wire
//! API, base URL, credential variables and well-known models OpenClaw users expect.
//!
//! The config loader gets this list through `LoadContext::presets` (see
//! `clawline_core::config::preset` for what each field means and how a preset becomes a
//! provider). Prices are USD per million tokens, from the providers' price lists as OpenClaw's
//! catalog records them; 0 means "not published", and costs are then reported as 0.
//!
//! This file is data plus a lookup; it must not do I/O.

use clawline_core::config::ApiKind;
use clawline_core::config::preset::{Discovery, Login, Preset, PresetModel};

/// Fields most presets share; each entry overrides what differs.
const BASE: Preset = Preset {
    id: "",
    name: "",
    api: ApiKind::OpenAiCompletions,
    base_url: "",
    alt_base_urls: &[],
    key_vars: &[],
    base_url_var: None,
    login: Login::Key,
    discovery: Discovery::None,
    default_model: "",
    models: &[],
    headers: &[],
    bearer: false,
    token_exchange_url: None,
    token_files: &[],
    token_file_host: "",
};

const fn m(
    id: &'static str,
    name: &'static str,
    context_window: u64,
    max_tokens: u32,
    image: bool,
    reasoning: bool,
    cost: [f64; 4],
) -> PresetModel {
    PresetModel { id, name, context_window, max_tokens, image, reasoning, cost }
}

const FREE: [f64; 4] = [0.0; 4];

const CLAUDE: &[PresetModel] = &[
    m("claude-sonnet-4-5", "Claude Sonnet 4.5", 200_000, 64_000, true, true, [3.0, 15.0, 0.3, 3.75]),
    m("claude-opus-4-5", "Claude Opus 4.5", 200_000, 64_000, true, true, [5.0, 25.0, 0.5, 6.25]),
    m("claude-haiku-4-5", "Claude Haiku 4.5", 200_000, 64_000, true, true, [1.0, 5.0, 0.1, 1.25]),
    m("claude-sonnet-4-6", "Claude Sonnet 4.6", 200_000, 64_000, true, true, [3.0, 15.0, 0.3, 3.75]),
    m("claude-opus-4-6", "Claude Opus 4.6", 200_000, 64_000, true, true, [5.0, 25.0, 0.5, 6.25]),
];

const OPENAI: &[PresetModel] = &[
    m("gpt-5-mini", "GPT-5 mini", 400_000, 128_000, true, true, [0.25, 2.0, 0.025, 0.0]),
    m("gpt-5", "GPT-5", 400_000, 128_000, true, true, [1.25, 10.0, 0.125, 0.0]),
    m("gpt-5.1", "GPT-5.1", 400_000, 128_000, true, true, [1.25, 10.0, 0.13, 0.0]),
    m("gpt-5.2", "GPT-5.2", 400_000, 128_000, true, true, [1.75, 14.0, 0.175, 0.0]),
    m("gpt-4.1", "GPT-4.1", 1_047_576, 32_768, true, false, [2.0, 8.0, 0.5, 0.0]),
    m("gpt-4o", "GPT-4o", 128_000, 16_384, true, false, [2.5, 10.0, 1.25, 0.0]),
];

const CODEX: &[PresetModel] = &[
    m("gpt-5.2", "GPT-5.2 (ChatGPT)", 272_000, 128_000, true, true, [1.75, 14.0, 0.175, 0.0]),
    m("gpt-5.2-codex", "GPT-5.2 Codex", 272_000, 128_000, true, true, [1.75, 14.0, 0.175, 0.0]),
    m("gpt-5.1-codex-max", "GPT-5.1 Codex Max", 272_000, 128_000, true, true, [1.25, 10.0, 0.125, 0.0]),
    m("gpt-5.1-codex-mini", "GPT-5.1 Codex mini", 272_000, 128_000, true, true, [0.25, 2.0, 0.025, 0.0]),
];

const GEMINI: &[PresetModel] = &[
    m("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, true, true, [0.3, 2.5, 0.075, 0.0]),
    m("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, true, true, [1.25, 10.0, 0.31, 0.0]),
    m("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536, true, true, FREE),
    m("gemini-3-flash-preview", "Gemini 3 Flash (preview)", 1_048_576, 65_536, true, true, [0.5, 3.0, 0.05, 0.0]),
    m("gemini-3.1-pro-preview", "Gemini 3.1 Pro (preview)", 1_048_576, 65_536, true, true, FREE),
];

const BEDROCK: &[PresetModel] = &[
    m(
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "Claude Sonnet 4.5 (Bedrock)",
        200_000,
        64_000,
        true,
        true,
        [3.0, 15.0, 0.3, 3.75],
    ),
    m("amazon.nova-pro-v1:0", "Amazon Nova Pro", 300_000, 10_000, true, false, [0.8, 3.2, 0.2, 0.0]),
];

const COPILOT: &[PresetModel] = &[
    m("gpt-4o", "GPT-4o (Copilot)", 128_000, 16_384, true, false, FREE),
    m("gpt-4.1", "GPT-4.1 (Copilot)", 128_000, 16_384, true, false, FREE),
];

const CLOUDFLARE: &[PresetModel] = &[m(
    "claude-sonnet-4-5",
    "Claude Sonnet 4.5 (via Cloudflare)",
    200_000,
    64_000,
    true,
    true,
    [3.0, 15.0, 0.3, 3.75],
)];

const OPENROUTER: &[PresetModel] = &[
    m("openrouter/auto", "OpenRouter Auto", 200_000, 8_192, true, false, FREE),
    m("moonshotai/kimi-k2.5", "Kimi K2.5 (OpenRouter)", 262_144, 262_144, true, true, [0.44, 2.0, 0.22, 0.0]),
];

const MINIMAX: &[PresetModel] = &[
    m("MiniMax-M2.7", "MiniMax M2.7", 204_800, 131_072, false, true, [0.3, 1.2, 0.06, 0.375]),
    m("MiniMax-M2.5", "MiniMax M2.5", 204_800, 131_072, false, true, [0.3, 1.2, 0.03, 0.375]),
];

const MOONSHOT: &[PresetModel] = &[
    m("kimi-k2.5", "Kimi K2.5", 262_144, 262_144, true, false, [0.6, 3.0, 0.1, 0.6]),
    m("kimi-k2-thinking", "Kimi K2 Thinking", 262_144, 262_144, false, true, [0.6, 2.5, 0.15, 0.6]),
    m("kimi-k2-turbo", "Kimi K2 Turbo", 256_000, 16_384, false, false, [1.15, 8.0, 0.15, 1.15]),
];

const KIMI_CODING: &[PresetModel] = &[m("k2p5", "Kimi for Coding (K2.5)", 262_144, 32_768, true, true, FREE)];

const QWEN: &[PresetModel] = &[
    m("coder-model", "Qwen Coder", 128_000, 8_192, false, false, FREE),
    m("vision-model", "Qwen Vision", 128_000, 8_192, true, false, FREE),
];

const ZAI: &[PresetModel] = &[
    m("glm-4.7", "GLM-4.7", 204_800, 131_072, false, true, [0.6, 2.2, 0.11, 0.0]),
    m("glm-4.6", "GLM-4.6", 204_800, 131_072, false, true, [0.6, 2.2, 0.11, 0.0]),
    m("glm-4.6v", "GLM-4.6V", 128_000, 32_768, true, false, [0.3, 0.9, 0.0, 0.0]),
];

const BYTEPLUS: &[PresetModel] = &[
    m("seed-1-8-251228", "Seed 1.8", 256_000, 4_096, true, false, FREE),
    m("kimi-k2-5-260127", "Kimi K2.5 (ModelArk)", 256_000, 4_096, true, false, FREE),
];
const BYTEPLUS_PLAN: &[PresetModel] = &[m("ark-code-latest", "Ark Code (latest)", 256_000, 4_096, false, false, FREE)];
const DOUBAO: &[PresetModel] = &[
    m("doubao-seed-1-8-251228", "Doubao Seed 1.8", 256_000, 4_096, true, false, FREE),
    m("deepseek-v3-2-251201", "DeepSeek V3.2 (Volcengine)", 128_000, 4_096, false, false, FREE),
];
const DOUBAO_PLAN: &[PresetModel] = &[m("ark-code-latest", "Ark Code (latest)", 256_000, 4_096, false, false, FREE)];

const CHUTES: &[PresetModel] = &[
    m("zai-org/GLM-4.7-TEE", "GLM-4.7 (TEE)", 202_752, 65_535, false, true, [0.4, 2.0, 0.0, 0.0]),
    m("deepseek-ai/DeepSeek-V3.2-TEE", "DeepSeek V3.2 (TEE)", 131_072, 65_536, false, true, [0.28, 0.42, 0.0, 0.0]),
    m("moonshotai/Kimi-K2.5-TEE", "Kimi K2.5 (TEE)", 262_144, 65_535, true, true, [0.45, 2.2, 0.0, 0.0]),
];

const HUGGINGFACE: &[PresetModel] = &[
    m("deepseek-ai/DeepSeek-R1", "DeepSeek R1", 131_072, 8_192, false, true, [3.0, 7.0, 3.0, 3.0]),
    m("deepseek-ai/DeepSeek-V3.1", "DeepSeek V3.1", 131_072, 8_192, false, false, [0.6, 1.25, 0.6, 0.6]),
];

const TOGETHER: &[PresetModel] = &[
    m(
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "Llama 3.3 70B Turbo",
        131_072,
        8_192,
        false,
        false,
        [0.88, 0.88, 0.0, 0.0],
    ),
    m("moonshotai/Kimi-K2.5", "Kimi K2.5 (Together)", 262_144, 32_768, true, true, [0.5, 2.8, 0.5, 2.8]),
];

const VENICE: &[PresetModel] = &[
    m("kimi-k2-5", "Kimi K2.5 (Venice)", 256_000, 65_536, true, true, FREE),
    m("llama-3.3-70b", "Llama 3.3 70B (Venice)", 128_000, 4_096, false, false, FREE),
];

const NVIDIA: &[PresetModel] = &[
    m("nvidia/llama-3.1-nemotron-70b-instruct", "Nemotron 70B", 131_072, 4_096, false, false, FREE),
    m("meta/llama-3.3-70b-instruct", "Llama 3.3 70B (NVIDIA)", 131_072, 4_096, false, false, FREE),
];

const QIANFAN: &[PresetModel] = &[
    m("deepseek-v3.2", "DeepSeek V3.2 (Qianfan)", 98_304, 32_768, false, true, FREE),
    m("ernie-5.0-thinking-preview", "ERNIE 5.0 Thinking (preview)", 119_000, 64_000, true, true, FREE),
];

const XIAOMI: &[PresetModel] = &[m("mimo-v2-flash", "MiMo V2 Flash", 262_144, 8_192, false, false, FREE)];

const KILOCODE: &[PresetModel] = &[m("kilo/auto", "Kilo Auto", 1_000_000, 128_000, true, true, FREE)];

const NONE: &[(&str, &str)] = &[];

/// Every built-in provider, in the order `models list --all` shows them.
pub const PRESETS: &[Preset] = &[
    Preset {
        id: "anthropic",
        name: "Anthropic",
        api: ApiKind::AnthropicMessages,
        base_url: "https://api.anthropic.com",
        alt_base_urls: NONE,
        key_vars: &["ANTHROPIC_API_KEY", "ANTHROPIC_OAUTH_TOKEN"],
        base_url_var: Some("ANTHROPIC_BASE_URL"),
        login: Login::OAuth,
        discovery: Discovery::None,
        default_model: "claude-sonnet-4-5",
        models: CLAUDE,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "openai",
        name: "OpenAI",
        api: ApiKind::OpenAiResponses,
        base_url: "https://api.openai.com/v1",
        alt_base_urls: NONE,
        key_vars: &["OPENAI_API_KEY"],
        base_url_var: Some("OPENAI_BASE_URL"),
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "gpt-5-mini",
        models: OPENAI,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "openai-codex",
        name: "OpenAI Codex (ChatGPT sign-in)",
        api: ApiKind::OpenAiResponses,
        base_url: "https://chatgpt.com/backend-api/codex",
        alt_base_urls: NONE,
        key_vars: &[],
        base_url_var: None,
        login: Login::OAuth,
        discovery: Discovery::None,
        default_model: "gpt-5.2",
        models: CODEX,
        headers: &[("OpenAI-Beta", "responses=experimental"), ("originator", "clawline")],
        ..BASE
    },
    Preset {
        id: "google",
        name: "Google Gemini",
        api: ApiKind::GoogleGenerativeAi,
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        alt_base_urls: NONE,
        key_vars: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "gemini-2.5-flash",
        models: GEMINI,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "amazon-bedrock",
        name: "Amazon Bedrock",
        api: ApiKind::BedrockConverseStream,
        base_url: "https://bedrock-runtime.{region}.amazonaws.com",
        alt_base_urls: NONE,
        key_vars: &["AWS_BEARER_TOKEN_BEDROCK"],
        base_url_var: None,
        login: Login::Aws,
        discovery: Discovery::Bedrock,
        default_model: "anthropic.claude-sonnet-4-5-20250929-v1:0",
        models: BEDROCK,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "github-copilot",
        name: "GitHub Copilot",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.individual.githubcopilot.com",
        alt_base_urls: &[("enterprise", "https://api.enterprise.githubcopilot.com")],
        key_vars: &["COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"],
        base_url_var: None,
        login: Login::TokenExchange,
        discovery: Discovery::OpenAiModels,
        default_model: "gpt-4o",
        models: COPILOT,
        headers: &[("Copilot-Integration-Id", "vscode-chat"), ("Editor-Version", "vscode/1.96.0")],
        token_exchange_url: Some("https://api.github.com/copilot_internal/v2/token"),
        token_files: &["github-copilot/apps.json", "github-copilot/hosts.json"],
        token_file_host: "github.com",
        ..BASE
    },
    Preset {
        id: "cloudflare-ai-gateway",
        name: "Cloudflare AI Gateway (Anthropic)",
        api: ApiKind::AnthropicMessages,
        base_url: "https://gateway.ai.cloudflare.com/v1/{accountId}/{gatewayId}/anthropic",
        alt_base_urls: NONE,
        key_vars: &["CLOUDFLARE_AI_GATEWAY_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "claude-sonnet-4-5",
        models: CLOUDFLARE,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "openrouter",
        name: "OpenRouter",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://openrouter.ai/api/v1",
        alt_base_urls: NONE,
        key_vars: &["OPENROUTER_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "openrouter/auto",
        models: OPENROUTER,
        headers: &[("HTTP-Referer", "https://github.com/clawline/clawline"), ("X-Title", "clawline")],
        ..BASE
    },
    Preset {
        id: "minimax",
        name: "MiniMax",
        api: ApiKind::AnthropicMessages,
        base_url: "https://api.minimax.io/anthropic",
        alt_base_urls: &[("China", "https://api.minimaxi.com/anthropic")],
        key_vars: &["MINIMAX_API_KEY", "MINIMAX_CODE_PLAN_KEY", "MINIMAX_CODING_API_KEY", "MINIMAX_OAUTH_TOKEN"],
        base_url_var: None,
        login: Login::OAuth,
        discovery: Discovery::None,
        default_model: "MiniMax-M2.7",
        models: MINIMAX,
        headers: NONE,
        bearer: true,
        ..BASE
    },
    Preset {
        id: "moonshot",
        name: "Moonshot (Kimi)",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.moonshot.ai/v1",
        alt_base_urls: &[("China", "https://api.moonshot.cn/v1")],
        key_vars: &["MOONSHOT_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "kimi-k2.5",
        models: MOONSHOT,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "kimi-coding",
        name: "Kimi for Coding",
        api: ApiKind::AnthropicMessages,
        base_url: "https://api.kimi.com/coding",
        alt_base_urls: NONE,
        key_vars: &["KIMI_API_KEY", "KIMICODE_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "k2p5",
        models: KIMI_CODING,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "qwen-portal",
        name: "Qwen portal (Qwen sign-in)",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://portal.qwen.ai/v1",
        alt_base_urls: NONE,
        key_vars: &["QWEN_OAUTH_TOKEN", "QWEN_PORTAL_API_KEY"],
        base_url_var: None,
        login: Login::OAuth,
        discovery: Discovery::None,
        default_model: "coder-model",
        models: QWEN,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "zai",
        name: "Z.AI",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.z.ai/api/paas/v4",
        alt_base_urls: &[
            ("coding plan", "https://api.z.ai/api/coding/paas/v4"),
            ("China", "https://open.bigmodel.cn/api/paas/v4"),
            ("China coding plan", "https://open.bigmodel.cn/api/coding/paas/v4"),
        ],
        key_vars: &["ZAI_API_KEY", "Z_AI_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "glm-4.7",
        models: ZAI,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "byteplus",
        name: "BytePlus ModelArk",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://ark.ap-southeast.bytepluses.com/api/v3",
        alt_base_urls: NONE,
        key_vars: &["BYTEPLUS_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "seed-1-8-251228",
        models: BYTEPLUS,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "byteplus-plan",
        name: "BytePlus ModelArk coding plan",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://ark.ap-southeast.bytepluses.com/api/coding/v3",
        alt_base_urls: NONE,
        key_vars: &["BYTEPLUS_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "ark-code-latest",
        models: BYTEPLUS_PLAN,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "volcengine",
        name: "Doubao (Volcano Engine Ark)",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://ark.cn-beijing.volces.com/api/v3",
        alt_base_urls: NONE,
        key_vars: &["VOLCANO_ENGINE_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "doubao-seed-1-8-251228",
        models: DOUBAO,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "volcengine-plan",
        name: "Doubao coding plan (Volcano Engine Ark)",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://ark.cn-beijing.volces.com/api/coding/v3",
        alt_base_urls: NONE,
        key_vars: &["VOLCANO_ENGINE_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "ark-code-latest",
        models: DOUBAO_PLAN,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "chutes",
        name: "Chutes",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://llm.chutes.ai/v1",
        alt_base_urls: NONE,
        key_vars: &["CHUTES_API_KEY", "CHUTES_OAUTH_TOKEN"],
        base_url_var: None,
        login: Login::OAuth,
        discovery: Discovery::OpenAiModels,
        default_model: "zai-org/GLM-4.7-TEE",
        models: CHUTES,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "ollama",
        name: "Ollama (local)",
        api: ApiKind::Ollama,
        base_url: "http://127.0.0.1:11434",
        alt_base_urls: NONE,
        key_vars: &["OLLAMA_API_KEY"],
        base_url_var: Some("OLLAMA_HOST"),
        login: Login::Local,
        discovery: Discovery::Ollama,
        default_model: "",
        models: &[],
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "vllm",
        name: "vLLM (local, OpenAI-compatible)",
        api: ApiKind::OpenAiCompletions,
        base_url: "http://127.0.0.1:8000/v1",
        alt_base_urls: NONE,
        key_vars: &["VLLM_API_KEY"],
        base_url_var: None,
        login: Login::Local,
        discovery: Discovery::OpenAiModels,
        default_model: "",
        models: &[],
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "huggingface",
        name: "Hugging Face router",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://router.huggingface.co/v1",
        alt_base_urls: NONE,
        key_vars: &["HUGGINGFACE_HUB_TOKEN", "HF_TOKEN"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "deepseek-ai/DeepSeek-R1",
        models: HUGGINGFACE,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "together",
        name: "Together AI",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.together.xyz/v1",
        alt_base_urls: NONE,
        key_vars: &["TOGETHER_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        models: TOGETHER,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "venice",
        name: "Venice",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.venice.ai/api/v1",
        alt_base_urls: NONE,
        key_vars: &["VENICE_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "kimi-k2-5",
        models: VENICE,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "nvidia",
        name: "NVIDIA",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://integrate.api.nvidia.com/v1",
        alt_base_urls: NONE,
        key_vars: &["NVIDIA_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "nvidia/llama-3.1-nemotron-70b-instruct",
        models: NVIDIA,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "qianfan",
        name: "Baidu Qianfan",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://qianfan.baidubce.com/v2",
        alt_base_urls: NONE,
        key_vars: &["QIANFAN_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "deepseek-v3.2",
        models: QIANFAN,
        headers: NONE,
        ..BASE
    },
    Preset {
        id: "xiaomi",
        name: "Xiaomi MiMo",
        api: ApiKind::AnthropicMessages,
        base_url: "https://api.xiaomimimo.com/anthropic",
        alt_base_urls: &[("OpenAI-compatible", "https://api.xiaomimimo.com/v1")],
        key_vars: &["XIAOMI_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::None,
        default_model: "mimo-v2-flash",
        models: XIAOMI,
        headers: NONE,
        bearer: true,
        ..BASE
    },
    Preset {
        id: "kilocode",
        name: "Kilo Gateway",
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.kilo.ai/api/gateway",
        alt_base_urls: NONE,
        key_vars: &["KILOCODE_API_KEY"],
        base_url_var: None,
        login: Login::Key,
        discovery: Discovery::OpenAiModels,
        default_model: "kilo/auto",
        models: KILOCODE,
        headers: NONE,
        ..BASE
    },
];

/// The preset called `id`.
pub fn preset(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::config::preset::fill_base_url;

    #[test]
    fn every_preset_is_well_formed() {
        let mut ids = std::collections::HashSet::new();
        for p in PRESETS {
            assert!(ids.insert(p.id), "duplicate preset {}", p.id);
            assert!(clawline_core::session_key::validate_agent_id(p.id).is_ok(), "{}", p.id);
            assert!(p.base_url.starts_with("https://") || p.base_url.starts_with("http://127.0.0.1"), "{}", p.id);
            if !p.default_model.is_empty() {
                assert!(p.model(p.default_model).is_some(), "{}: default model not listed", p.id);
            }
            assert!(
                p.login == Login::Local || p.login == Login::Aws || !p.key_vars.is_empty() || p.login == Login::OAuth,
                "{}",
                p.id
            );
            for m in p.models {
                assert!(m.context_window > 0 && m.max_tokens > 0, "{}/{}", p.id, m.id);
            }
        }
        // The audit's list.
        for id in [
            "anthropic",
            "openai",
            "openai-codex",
            "google",
            "amazon-bedrock",
            "github-copilot",
            "cloudflare-ai-gateway",
            "openrouter",
            "minimax",
            "moonshot",
            "kimi-coding",
            "qwen-portal",
            "zai",
            "byteplus",
            "volcengine",
            "chutes",
            "ollama",
            "vllm",
            "huggingface",
            "together",
            "venice",
            "nvidia",
            "qianfan",
            "xiaomi",
            "kilocode",
        ] {
            assert!(preset(id).is_some(), "{id} missing");
        }
        assert_eq!(preset("openrouter").unwrap().default_model, "openrouter/auto");
        assert_eq!(preset("qianfan").unwrap().default_model, "deepseek-v3.2");
        assert!(preset("moonshot").unwrap().alt_base_urls.iter().any(|(_, u)| u.contains("moonshot.cn")));
    }

    #[test]
    fn the_cloudflare_url_is_built_from_its_ids() {
        let v = |n: &str| match n {
            "accountId" => Some("acc".to_string()),
            "gatewayId" => Some("gw".to_string()),
            _ => None,
        };
        assert_eq!(
            fill_base_url(preset("cloudflare-ai-gateway").unwrap().base_url, &v).unwrap(),
            "https://gateway.ai.cloudflare.com/v1/acc/gw/anthropic"
        );
        assert_eq!(fill_base_url(preset("amazon-bedrock").unwrap().base_url, &v).unwrap_err(), "region");
        assert_eq!(fill_base_url("http://x/{a", &v).unwrap(), "http://x/{a");
    }
}
